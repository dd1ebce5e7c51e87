"""Entry point of the plugin (torch-free): registers the ``qwen2_5_vl`` and ``qwen3_vl`` backbones."""

from __future__ import annotations

from geovr import hookimpl
from geovr_plugin_qwen_vl.config import Qwen3VLBackboneConfig, Qwen25VLBackboneConfig


@hookimpl
def register_backbones(register):
    """Register both Qwen-VL students; factories are imported lazily (torch/transformers)."""
    register(
        "qwen3_vl",
        "geovr_plugin_qwen_vl.backbone:build_qwen3_vl",
        config=Qwen3VLBackboneConfig,
        summary="Qwen3-VL video student (transformers) with camera/scale geometry tokens",
    )
    register(
        "qwen2_5_vl",
        "geovr_plugin_qwen_vl.backbone:build_qwen2_5_vl",
        config=Qwen25VLBackboneConfig,
        aliases=("qwen25_vl",),
        summary="Qwen2.5-VL video student (transformers) with camera/scale geometry tokens",
    )
