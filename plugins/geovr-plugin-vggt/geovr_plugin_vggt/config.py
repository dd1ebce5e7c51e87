"""Recipe options of the ``vggt`` teacher (torch-free: imported when plugins load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import attrs

from geovr.recipe.preflight import checkpoint_source

#: outputs the VGGT teacher computes
VGGT_PROVIDES = frozenset({"features", "depth", "depth_conf", "pose_enc", "intrinsics", "extrinsics", "points"})
#: aggregator depth of the named model configurations built in code
NAMED_DEPTHS = {"1b": 24}
#: named model configurations shipped as package data (``geovr_plugin_vggt/configs/<name>.json``)
PACKAGED_CONFIGS = ("tiny",)


def named_config_path(name: str) -> Path:
    """Path of the packaged JSON config ``name`` (``"tiny"``: the test-size model of the reference data)."""
    from importlib.resources import files

    return Path(str(files("geovr_plugin_vggt") / "configs" / f"{name}.json"))


def config_depth(model_config: str) -> int | None:
    """Aggregator depth of ``model_config`` ("1b", "tiny" or a JSON path) or ``None`` if unreadable."""
    if model_config.lower() in NAMED_DEPTHS:
        return NAMED_DEPTHS[model_config.lower()]
    if model_config in PACKAGED_CONFIGS:
        path = named_config_path(model_config)
    else:
        path = Path(model_config).expanduser()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if "tiny" in data and "aggregator" not in data:
        data = data["tiny"]
    try:
        return int(data["aggregator"]["depth"])
    except (KeyError, TypeError, ValueError):
        return None


@attrs.define
class VGGTTeacherConfig:
    """Options of teacher ``vggt``.

    pretrained: HF id (resolved from the local HF cache only) or a local ``.pt``/``.safetensors``
    file or directory; ``""`` = random weights drawn from ``seed`` (smoke tests and tiny recipes
    only: a random teacher teaches nothing). model_config: ``"1b"``, ``"tiny"`` (test-size model, shipped with the plugin) or a JSON config path.
    image_size: long side of the working resolution in pixels (multiple of 14; 504 as in the released
    training). resize_mode: ``"resize"`` (default: the whole frame, long side → image_size, short side →
    the nearest multiple of ``size_multiple``; the teacher sees exactly the student's field of view),
    ``"crop"`` (the reference VGGT loader: width → image_size, height rounded to a multiple of 14 and
    centre-cropped to at most image_size, which cuts portrait frames) or ``"pad"`` (long side →
    image_size, padded with white to a square). size_multiple: rounding of the short side in
    ``resize`` mode (28 = two patches, as released; 14 = one). dtype: aggregator precision
    (``"bfloat16"`` runs it under autocast; the heads always run in float32). layers: default
    aggregator depth indices for features (each < depth). feature_half: ``"frame"`` = first C channels
    of the 2C aggregator output, ``"global"`` = last C, ``"both"`` = all 2C. pool: 2 = 2×2 average pool
    of the patch grid (ceil mode), 1 = none. attention: ``"sdpa"`` or ``"xformers"``. points: world
    points from ``"depth"`` (depth unprojected with the predicted cameras; the point head is not built)
    or from the point ``"head"``.
    """

    pretrained: str = "facebook/VGGT-1B"
    model_config: str = "1b"
    image_size: int = 504
    resize_mode: Literal["resize", "crop", "pad"] = "resize"
    size_multiple: int = 28
    dtype: Literal["float32", "bfloat16"] = "float32"
    layers: list[int] = attrs.field(factory=lambda: [4, 11, 17, 23])
    feature_half: Literal["frame", "global", "both"] = "frame"
    pool: Literal[1, 2] = 2
    attention: Literal["sdpa", "xformers"] = "sdpa"
    points: Literal["depth", "head"] = "depth"
    seed: int = 0

    def provides(self) -> frozenset[str]:
        """Outputs this teacher fills in."""
        return VGGT_PROVIDES

    def cache_layout(self, frames: int, height: int, width: int, layers):
        """Per-sample output shapes and forward FLOPs (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_vggt.sizing import cache_layout

        return cache_layout(self, frames, height, width, layers)

    def build_meta(self):
        """The model on the meta device (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_vggt.sizing import build_meta

        return build_meta(self)

    def depth(self) -> int | None:
        """Aggregator depth of the configured model (``None`` when the config cannot be read)."""
        return config_depth(self.model_config)

    def preflight(self) -> list[str]:
        """The checkpoint file/directory, or an HF id in the local cache, must be there (no network)."""
        return checkpoint_source(self.pretrained, "pretrained", filename=("model.safetensors", "model.pt"))

    def check(self) -> list[str]:
        """Cross-field problems (empty when valid)."""
        problems = []
        if self.image_size <= 0 or self.image_size % 14:
            problems.append(f"image_size must be a positive multiple of 14 (the patch size), got {self.image_size}")
        if self.size_multiple <= 0 or self.size_multiple % 14:
            problems.append(
                f"size_multiple must be a positive multiple of 14 (the patch size), got {self.size_multiple}"
            )
        depth = self.depth()
        if depth is None:
            problems.append(
                f"model_config {self.model_config!r} is not '1b', 'tiny' or a readable JSON "
                f"config with aggregator.depth"
            )
        if not self.layers:
            problems.append("layers must list at least one aggregator depth index")
        bad = [layer for layer in self.layers if layer < 0 or (depth is not None and layer >= depth)]
        if bad:
            problems.append(
                f"layers {bad} out of range: the {self.model_config!r} aggregator has depth "
                f"{depth}, valid indices 0..{(depth or 1) - 1}"
            )
        if len(set(self.layers)) != len(self.layers):
            problems.append(f"layers {self.layers} has duplicates")
        return problems
