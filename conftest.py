"""Suite-wide test settings (tests/ and every plugin's tests/)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test model is tiny: one intra-op thread is fastest on a busy 2-core machine (thread
    hand-offs dominate). Tests start from this setting; the previous one is restored afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
