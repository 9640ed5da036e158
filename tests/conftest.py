import random

import numpy as np
import pytest
import torch

import jsae.prune_policy


@pytest.fixture(autouse=True)
def _seed_and_grad_state():
    """Seed every RNG, and make sure no test leaks grad mode or threads into the next."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    grad = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(grad)


@pytest.fixture
def always(monkeypatch):
    """Prune every block a bound allows, whatever it costs, never probe and never back off:
    the pruned paths run on pairs where the cost model would take the full scan."""
    monkeypatch.setattr(jsae.prune_policy, "GATHERED_COST", 0.0)
    monkeypatch.setattr(jsae.prune_policy, "SCAN_COST", 0.0)
    monkeypatch.setattr(jsae.prune_policy, "MAX_SKIP", 0)
    monkeypatch.setattr(jsae.prune_policy, "WIN", 1.0)
    monkeypatch.setattr(jsae.prune_policy, "PROBE_TOKENS", 1 << 30)  # no probe: every block


def pytest_configure(config):
    """Markers: ``browser`` (a real Chromium against a live server; needs /usr/bin/chromium,
    see `make browser`) and ``slow``; `make test-fast` leaves both out."""
    config.addinivalue_line(
        "markers", "browser: drives Debian's Chromium against a live `streamlit run` server"
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
