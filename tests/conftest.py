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
