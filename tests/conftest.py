import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_grad_state():
    """Seed every RNG, and make sure no test leaks grad mode or threads into the next."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    grad = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(grad)


def pytest_configure(config):
    """Markers: ``browser`` (a real Chromium against a live server; needs /usr/bin/chromium,
    see `make browser`) and ``slow``; `make test-fast` leaves both out."""
    config.addinivalue_line(
        "markers", "browser: drives Debian's Chromium against a live `streamlit run` server"
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
