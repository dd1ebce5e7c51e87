"""Fixtures shared by the VGGT plugin tests: golden data location and reference cases."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from geovr.testing.golden import golden_dir


@pytest.fixture(scope="module")
def root():
    """The golden VGGT directory (``shared/golden/vggt``)."""
    return golden_dir("vggt")


@pytest.fixture(scope="module")
def io(root):
    """``tiny_io.safetensors``: the four reference cases with inputs, outputs and intermediates."""
    return load_file(str(root / "tiny_io.safetensors"))
