"""Export a trained student as a plain transformers model directory.

``export(run_dir, dest)`` rebuilds the backbone from ``RUN_DIR/recipe.toml`` (seeded like the run), loads
the trainable parameters of the newest (or a given) checkpoint, checks the frozen weights match those
trained with, and calls ``backbone.save_pretrained(dest)``: LoRA merged, no geometry tokens, no heads,
loadable with ``from_pretrained`` and nothing from geovr.
"""

from __future__ import annotations

import os
from pathlib import Path

from geovr.errors import CheckpointError


def load_student(run_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None, device: str = "cpu"):
    """The trained backbone of a run: rebuilt from its recipe with the checkpoint's parameters loaded.

    Returns ``(backbone, recipe, checkpoint_dir)``. Raises :class:`CheckpointError` naming what is missing.
    """
    from geovr.recipe import load_recipe
    from geovr.train import checkpoint as ckpt_io
    from geovr.train.runner import build_seeded

    run = Path(run_dir)
    recipe_file = run / "recipe.toml"
    if not recipe_file.is_file():
        raise CheckpointError(f"{run}: not a geovr run directory (no recipe.toml)")
    found = ckpt_io.load_checkpoint(checkpoint if checkpoint is not None else run)
    recipe = load_recipe(recipe_file)
    ctx = build_seeded(recipe, device=device, stages=("backbone",))
    backbone = ctx.backbone
    where = str(found["path"])
    expected = found["state"].get("frozen_fingerprint")
    if expected is not None and expected != ckpt_io.frozen_fingerprint(backbone):
        raise CheckpointError(f"{where}: the rebuilt backbone's frozen weights differ from those the run trained "
                              f"(its base model files changed?)")
    ckpt_io.load_trainable(backbone, found["model"], where=f"{where}/model.safetensors")
    return backbone, recipe, found["path"]


def export(run_dir: str | os.PathLike, dest: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None) -> Path:
    """Write the student of ``run_dir`` to ``dest`` with ``backbone.save_pretrained``; returns ``dest``."""
    backbone, _, _ = load_student(run_dir, checkpoint=checkpoint)
    if hasattr(backbone, "eval"):
        backbone.eval()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    backbone.save_pretrained(str(dest))
    return dest
