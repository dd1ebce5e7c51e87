"""Sizing of the ``llava_onevision`` backbone for ``geovr plan`` (see :mod:`geovr.sizing`).

The model is built on the meta device from the checkpoint's ``config.json``: a local directory's own, or
the copy in the local Hugging Face cache (no network). Freeze and LoRA are applied by the functions the
real build uses.
"""

from __future__ import annotations

import math

from geovr.sizing import SizingError, VisualTokens, decoder_activation_bytes, model_config_json


def model_config_dict(pretrained: str) -> dict:
    """``config.json`` of ``pretrained`` from a local directory or the local HF cache."""
    return model_config_json(
        pretrained,
        hf_cache=True,
        missing=f"llava_onevision: geovr plan needs the config.json of backbone pretrained = {pretrained!r}: "
        f"not a local directory and not in the local Hugging Face cache; download it "
        f"(`hf download {pretrained} config.json`) or point pretrained at a local checkpoint directory",
    )


class LlavaOneVisionMeta:
    """:class:`geovr.sizing.BackboneMeta` of a LLaVA-OneVision student."""

    def __init__(self, cfg, module, hf_config):
        self.cfg, self.module, self.hf_config = cfg, module, hf_config
        tc, vc = hf_config.text_config, hf_config.vision_config
        self.hidden_size = int(tc.hidden_size)
        self.num_layers = int(tc.num_hidden_layers)
        self.extra_trainable = 3 * self.hidden_size  # camera (2) + scale (1) embeddings
        self.patches = int(vc.image_size) // int(vc.patch_size)
        self.image_size = int(vc.image_size)

    def visual_tokens(self, frames: int, height: int, width: int) -> VisualTokens:
        """Every frame squared to the vision tower's size, ``h = w = ceil(patches / 2)`` tokens after the
        2× pooling; ``S·h·w + 1`` tokens (one newline token closes the video)."""
        side = math.ceil(self.patches / 2)
        return VisualTokens(frames * side * side + 1, (side, side), (self.image_size, self.image_size))

    def activation_bytes(self, tokens: int, visual_tokens: int, bytes_per_value: int, checkpointing: bool) -> float:
        """The Qwen2 decoder (:func:`geovr.sizing.decoder_activation_bytes`) plus the projector when it is
        trained (its input, linear and GELU outputs per SigLIP patch, before the pooling)."""
        tc, b = self.hf_config.text_config, bytes_per_value
        D, H = int(tc.hidden_size), int(tc.num_attention_heads)
        total = decoder_activation_bytes(
            hidden=D,
            intermediate=int(tc.intermediate_size),
            layers=int(tc.num_hidden_layers),
            heads=H,
            kv_heads=int(getattr(tc, "num_key_value_heads", None) or H),
            head_dim=int(getattr(tc, "head_dim", None) or D // H),
            vocab=int(tc.vocab_size),
            tokens=tokens,
            b=b,
            checkpointing=checkpointing,
        )
        if "projector" not in self.cfg.freeze and self.cfg.lora is None:
            side = math.ceil(self.patches / 2)
            frames = max(0, (visual_tokens - 1) // (side * side))
            dv = int(self.hf_config.vision_config.hidden_size)
            total += frames * self.patches**2 * b * (dv + 2 * D)
        return total


def build_meta(cfg) -> LlavaOneVisionMeta:
    """The student on the meta device with ``freeze`` / ``lora`` applied."""
    import torch
    from transformers import AutoConfig, LlavaOnevisionForConditionalGeneration

    from geovr_plugin_llava.loading import add_lora, freeze

    data = model_config_dict(cfg.pretrained)
    if data.get("model_type") != "llava_onevision":
        raise SizingError(
            f"llava_onevision: {cfg.pretrained!r} holds a {data.get('model_type')!r} model, "
            f"expected a 'llava_onevision' checkpoint"
        )
    hf_config = AutoConfig.for_model(**data)
    with torch.device("meta"):
        model = LlavaOnevisionForConditionalGeneration._from_config(hf_config)
    freeze(model, list(cfg.freeze))
    if cfg.lora is not None:
        model = add_lora(model, cfg.lora_options())
    return LlavaOneVisionMeta(cfg, model, hf_config)
