"""Fixtures of the DA3 plugin tests: golden data (committed beside the tests) and plugin registration."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module")
def da3_registered():
    """A process-wide plugin host holding the DA3 plugin (its entry point when installed, else the
    module registered directly); the previous host is restored afterwards."""
    from geovr.testing import registered
    from geovr_plugin_da3 import plugin

    with registered(plugin, "da3", distribution="geovr-plugin-da3") as host:
        yield host


@pytest.fixture(scope="module")
def io():
    """Reference inputs/outputs of the official any-view model (``da3_tiny_io.safetensors``)."""
    return load_file(str(GOLDEN / "da3_tiny_io.safetensors"))


@pytest.fixture(scope="module")
def metric_io():
    """Reference inputs/outputs of the official metric model (``metric_tiny_io.safetensors``)."""
    return load_file(str(GOLDEN / "metric_tiny_io.safetensors"))
