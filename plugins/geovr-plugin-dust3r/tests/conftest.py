"""Shared fixtures of the DUSt3R plugin tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Run the tiny models on one intra-op thread: on a shared, loaded machine OpenMP thread
    contention makes these millisecond-sized ops many times slower (results are identical)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
