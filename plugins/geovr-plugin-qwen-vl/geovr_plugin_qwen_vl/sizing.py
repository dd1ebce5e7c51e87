"""Sizing of the ``qwen2_5_vl`` / ``qwen3_vl`` backbones for ``geovr plan`` (see :mod:`geovr.sizing`).

The model is built on the meta device from the ``config.json`` of the checkpoint: a local checkpoint
directory's own, else the copy shipped as package data (:data:`MODEL_CONFIGS`: the values of the
checkpoints the shipped recipes name); ``geovr-tiny`` (and ``geovr-tiny-<size>``) use the tiny test configs. Freeze and LoRA are
applied by the same functions the real build uses.
"""

from __future__ import annotations

from geovr.sizing import VisualTokens, decoder_activation_bytes, model_config_json

#: shipped model configs: pretrained id (its last path part) → resource of this package
MODEL_CONFIGS = {
    "Qwen3-VL-2B-Instruct": "model_configs/Qwen3-VL-2B-Instruct.json",
    "Qwen2.5-VL-3B-Instruct": "model_configs/Qwen2.5-VL-3B-Instruct.json",
}


def model_config_dict(pretrained: str) -> dict:
    """``config.json`` of ``pretrained``: a local directory's own, else the shipped copy (:data:`MODEL_CONFIGS`)."""
    return model_config_json(
        pretrained,
        package="geovr_plugin_qwen_vl",
        shipped=MODEL_CONFIGS,
        missing=f"geovr plan: no shipped model config for backbone pretrained = {pretrained!r} (shipped: "
        f"{sorted(MODEL_CONFIGS)}); point pretrained at a local checkpoint directory with a config.json",
    )


class QwenVLMeta:
    """:class:`geovr.sizing.BackboneMeta` of a Qwen-VL student."""

    def __init__(self, cfg, kind: str, module, hf_config):
        self.cfg, self.kind, self.module, self.hf_config = cfg, kind, module, hf_config
        tc = hf_config.text_config
        self.hidden_size = int(tc.hidden_size)
        self.num_layers = int(tc.num_hidden_layers)
        self.extra_trainable = 3 * self.hidden_size  # geometry tokens: camera (2) + scale (1) embeddings

    def visual_tokens(self, frames: int, height: int, width: int) -> VisualTokens:
        """Frames duplicated (one temporal group per frame): ``S · (h/f) · (w/f)`` tokens, f = patch × merge."""
        from geovr_plugin_qwen_vl.backbone import target_frame_size

        vis = self.hf_config.vision_config
        factor = int(vis.patch_size) * int(vis.spatial_merge_size)
        h, w = target_frame_size(height, width, factor, self.cfg, num_frames=frames, kind=self.kind)
        gh, gw = h // factor, w // factor
        return VisualTokens(frames * gh * gw, (gh, gw), (gh * factor, gw * factor))

    def activation_bytes(self, tokens: int, visual_tokens: int, bytes_per_value: int, checkpointing: bool) -> float:
        """The LLM decoder (:func:`geovr.sizing.decoder_activation_bytes`, q/k norms for Qwen3) plus the
        vision merger when it is trained (its two norms in float32 and MLP activations per visual token)
        and the vision blocks when the tower is trained (``"vision"`` not in ``freeze``)."""
        tc, b = self.hf_config.text_config, bytes_per_value
        D, H = int(tc.hidden_size), int(tc.num_attention_heads)
        total = decoder_activation_bytes(
            hidden=D,
            intermediate=int(tc.intermediate_size),
            layers=int(tc.num_hidden_layers),
            heads=H,
            kv_heads=int(tc.num_key_value_heads),
            head_dim=int(getattr(tc, "head_dim", None) or D // H),
            vocab=int(tc.vocab_size),
            tokens=tokens,
            b=b,
            checkpointing=checkpointing,
            qk_norm=self.hf_config.model_type == "qwen3_vl",
        )
        vis = self.hf_config.vision_config
        if "merger" not in self.cfg.freeze and self.cfg.lora is None:
            dv = int(vis.hidden_size) * int(vis.spatial_merge_size) ** 2
            total += visual_tokens * (2 * (4 + b) * dv + 3 * b * dv)
        if "vision" not in self.cfg.freeze and self.cfg.lora is None:
            # a trained vision tower keeps its blocks' activations too: one patch token per
            # spatial_merge_size² of every visual token, through `depth` transformer blocks (no LM head)
            dvis, heads = int(vis.hidden_size), int(getattr(vis, "num_heads", 1))
            total += decoder_activation_bytes(
                hidden=dvis,
                intermediate=int(vis.intermediate_size),
                layers=int(vis.depth),
                heads=heads,
                kv_heads=heads,
                head_dim=dvis // heads,
                vocab=0,
                tokens=visual_tokens * int(vis.spatial_merge_size) ** 2,
                b=b,
                checkpointing=checkpointing,
            )
        return total


def build_meta(cfg, kind: str) -> QwenVLMeta:
    """The student on the meta device with ``freeze`` / ``lora`` applied."""
    import torch

    from geovr_plugin_qwen_vl.loading import apply_freeze, model_class, tiny_size, wrap_lora

    size = tiny_size(cfg.pretrained)
    if size is not None:  # "geovr-tiny", "geovr-tiny-small": random-init models built offline
        from geovr_plugin_qwen_vl.tiny_models import tiny_model_config

        hf_config = tiny_model_config(kind, size=size)
    else:
        from transformers import AutoConfig

        hf_config = AutoConfig.for_model(**model_config_dict(cfg.pretrained))
    with torch.device("meta"):
        hf = model_class(kind)._from_config(hf_config)
    apply_freeze(hf, cfg.freeze)
    hf = wrap_lora(hf, cfg)
    return QwenVLMeta(cfg, kind, hf, hf_config)
