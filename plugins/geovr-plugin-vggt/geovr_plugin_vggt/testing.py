"""Helpers for tests of this plugin and of code using it: the golden tiny VGGT.

``tiny_model(root)`` builds the tiny configuration of ``<root>/tiny_config.json`` and loads
``tiny_weights.safetensors`` strictly (eval mode, float32).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path


def tiny_config(root: str | Path) -> dict:
    """The ``tiny`` entry of the golden ``tiny_config.json``."""
    return json.loads((Path(root) / "tiny_config.json").read_text())["tiny"]


def tiny_model(root: str | Path, **enable):
    """Tiny VGGT with the golden weights loaded (strict), in eval mode."""
    from geovr_plugin_vggt.checkpoint import load_weights
    from geovr_plugin_vggt.model import VGGT

    model = VGGT.from_config(tiny_config(root), **enable)
    load_weights(model, Path(root) / "tiny_weights.safetensors")
    return model.eval()


@contextlib.contextmanager
def single_thread():
    """Run torch on one intra-op thread inside the block (tiny models on a shared, busy CPU are much
    faster without thread synchronisation); the previous setting is restored."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
