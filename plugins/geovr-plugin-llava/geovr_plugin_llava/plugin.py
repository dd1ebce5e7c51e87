"""Registration hooks of the LLaVA-OneVision plugin. Torch-free: the factory is a lazy string."""

from __future__ import annotations

from geovr import hookimpl
from geovr_plugin_llava.config import LlavaOneVisionConfig


@hookimpl
def register_backbones(register):
    """Register ``llava_onevision`` (transformers ``LlavaOnevisionForConditionalGeneration``)."""
    register(
        "llava_onevision",
        "geovr_plugin_llava.backbone:build",
        config=LlavaOneVisionConfig,
        summary="LLaVA-OneVision video student (SigLIP + Qwen2) with camera/scale geometry tokens",
    )
