"""Recipe options of the ``llava_onevision`` backbone (torch-free: imported during validation)."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from geovr.recipe.preflight import checkpoint_source

#: ``freeze`` entries and the sub-modules of ``LlavaOnevisionForConditionalGeneration.model`` they cover.
FREEZE_PARTS = {
    "vision": ("vision_tower",),
    "projector": ("multi_modal_projector", "image_newline"),
    "embeddings": ("language_model.embed_tokens",),
    "llm": ("language_model", "lm_head"),
}
#: LLM projection names LoRA adapts by default (inside the language model only).
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_KEYS = {"rank": int, "alpha": (int, float), "dropout": (int, float), "target_modules": list}


@attrs.define
class LlavaOneVisionConfig:
    """``[backbone] component = "llava_onevision"`` options.

    pretrained: HF id (must be in the local HF cache when offline) or a local model directory.
    dtype: weights dtype ("auto" = the checkpoint's). attn_implementation: transformers attention
    kernel; "flash_attention_2" falls back to "sdpa" with a warning when flash-attn is missing.
    gradient_checkpointing: recompute LLM activations in backward. freeze: parts to freeze, any of
    ``vision``, ``projector`` (projector + image_newline), ``embeddings``, ``llm``. lora: ``None`` or a
    table ``{rank, alpha, dropout, target_modules}`` (peft LoRA on the language model's projections;
    with LoRA every base weight is frozen). system_prompt: optional system message of the chat.
    max_new_tokens: default generation length of ``generate()``.
    """

    pretrained: str = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "bfloat16"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    gradient_checkpointing: bool = False
    freeze: list[str] = attrs.field(factory=lambda: ["vision"])
    lora: dict[str, Any] | None = None
    system_prompt: str | None = None
    max_new_tokens: int = 16

    def preflight(self) -> list[str]:
        """The checkpoint (local directory, or HF id in the local cache: no network) must be there."""
        return checkpoint_source(self.pretrained, "pretrained")

    def check(self) -> list[str]:
        """Cross-field rules; each string is reported as a recipe problem."""
        problems = [
            f"freeze: unknown part {p!r} (valid: {', '.join(sorted(FREEZE_PARTS))})"
            for p in self.freeze
            if p not in FREEZE_PARTS
        ]
        if not self.pretrained:
            problems.append("pretrained: must be an HF id or a local directory")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if self.lora is not None:
            for key, value in self.lora.items():
                if key not in LORA_KEYS:
                    problems.append(f"lora.{key}: unknown key (valid: {', '.join(sorted(LORA_KEYS))})")
                elif not isinstance(value, LORA_KEYS[key]) or isinstance(value, bool):
                    problems.append(f"lora.{key}: wrong type {type(value).__name__}")
            if isinstance(self.lora.get("rank", 8), int) and self.lora.get("rank", 8) < 1:
                problems.append("lora.rank: must be >= 1")
        return problems

    def build_meta(self):
        """The student on the meta device and its sizes (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_llava.sizing import build_meta

        return build_meta(self)

    def lora_options(self) -> dict[str, Any]:
        """LoRA options with defaults filled in (``rank`` 8, ``alpha`` 16, ``dropout`` 0.0)."""
        lora = dict(self.lora or {})
        return {
            "rank": int(lora.get("rank", 8)),
            "alpha": float(lora.get("alpha", 16)),
            "dropout": float(lora.get("dropout", 0.0)),
            "target_modules": list(lora.get("target_modules", DEFAULT_LORA_TARGETS)),
        }
