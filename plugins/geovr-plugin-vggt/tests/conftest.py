"""Fixtures shared by the VGGT plugin tests: golden data location and reference cases."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from geovr.testing.golden import golden_dir

#: the reference data these tests read (copied from the reference implementation's outputs; see golden/README.md)
GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_FILES = ("tiny_config.json", "tiny_weights.safetensors", "tiny_io.safetensors", "vggt_1b_state_dict_shapes.json")


@pytest.fixture(scope="module")
def root():
    """The golden VGGT directory (``tests/golden`` beside this file)."""
    return golden_dir("vggt", GOLDEN, files=GOLDEN_FILES)


@pytest.fixture(scope="module")
def io(root):
    """``tiny_io.safetensors``: the four reference cases with inputs, outputs and intermediates."""
    return load_file(str(root / "tiny_io.safetensors"))
