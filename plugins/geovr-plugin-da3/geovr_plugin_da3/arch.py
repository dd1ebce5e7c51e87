"""Named DA3 model configurations, shipped as package data (``configs/*.json``), torch-free.

``load_arch(name_or_path)`` → config dict: ``"giant"`` (DA3-GIANT, the released GeoVR dispatch: 40
blocks, patch 14, width 1536, dense-head levels 19/27/33/39), ``"large"`` (DA3-LARGE),
``"metric_large"`` (DA3METRIC-LARGE), ``"tiny"`` / ``"tiny_metric"`` (test sizes with every mechanism
of the big ones), or the path of a JSON file in the same layout.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

NAMED = ("giant", "large", "metric_large", "tiny", "tiny_metric")
#: official Hugging Face ids of the checkpoints, by configuration name
OFFICIAL_IDS = {
    "giant": "depth-anything/DA3-GIANT-1.1",
    "large": "depth-anything/DA3-LARGE",
    "metric_large": "depth-anything/DA3METRIC-LARGE",
}
_REQUIRED = {"backbone": ("embed_dim", "depth", "num_heads", "out_layers"), "head": ("type",)}


def load_arch(model_config: str) -> dict:
    """The configuration dict named by ``model_config``; raises ``ValueError`` naming what is wrong."""
    if model_config in NAMED:
        text = resources.files("geovr_plugin_da3").joinpath("configs", f"{model_config}.json").read_text()
        return json.loads(text)
    path = Path(model_config).expanduser()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"model_config {model_config!r} is not one of {list(NAMED)} nor a readable JSON file "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    problems = [
        f"{section}.{key}"
        for section, keys in _REQUIRED.items()
        for key in keys
        if not isinstance(data.get(section), dict) or key not in data[section]
    ]
    if problems:
        raise ValueError(f"model_config {str(path)!r} lacks {', '.join(problems)}")
    if data["head"]["type"] not in ("dualdpt", "dpt"):
        raise ValueError(
            f"model_config {str(path)!r}: head.type must be 'dualdpt' or 'dpt', got {data['head']['type']!r}"
        )
    return data


def arch_depth(arch: dict) -> int:
    """Number of backbone blocks."""
    return int(arch["backbone"]["depth"])


def is_metric(arch: dict) -> bool:
    """True for a metric (DPT + sky) configuration."""
    return arch["head"]["type"] == "dpt"
