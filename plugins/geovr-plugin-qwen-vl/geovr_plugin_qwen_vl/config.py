"""Recipe options of the ``qwen2_5_vl`` and ``qwen3_vl`` backbones (torch-free).

A recipe's ``[backbone]`` table is validated into :class:`Qwen3VLBackboneConfig` or
:class:`Qwen25VLBackboneConfig`; both share every option and differ only in the default checkpoint.
"""

from __future__ import annotations

from typing import Literal

import attrs

from geovr.recipe.preflight import checkpoint_source, missing_path

#: Parts of the model ``freeze`` may name: the vision tower (patch embedding + blocks), the
#: vision→LLM merger (and Qwen3-VL's deepstack mergers), the language model (+ LM head).
FREEZABLE = ("vision", "merger", "llm")
#: Keys of the ``lora`` table.
LORA_KEYS = ("rank", "alpha", "dropout", "target_modules")
#: Default LoRA targets: the attention projections of the LLM decoder layers.
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@attrs.define
class QwenVLBackboneConfig:
    """Options shared by both Qwen-VL backbones.

    pretrained: HF hub id or local directory (model + processor, as written by ``save_pretrained``);
    ``"geovr-tiny"`` = the tiny random-initialised model used by smoke tests; ``"geovr-tiny-small"`` a
    larger random-initialised one (hidden 128, 4 layers) that learns the synthetic world on a CPU.
    dtype: weights dtype (``"auto"`` = the checkpoint's). attn_implementation: ``"sdpa"`` (default),
    ``"flash_attention_2"`` (falls back to sdpa with a warning when flash-attn/CUDA is missing) or
    ``"eager"``. gradient_checkpointing: recompute LLM activations in backward.
    freeze: any of ``"vision"``, ``"merger"``, ``"llm"``. lora: ``{rank, alpha, dropout,
    target_modules}`` (peft LoRA on the LLM decoder layers; every base weight is then frozen) or
    ``None``. adapter: a directory written by ``save_adapter`` (LoRA weights + geometry tokens) to load.
    max_frames: largest S accepted for training (frames duplicated, one temporal token group per frame).
    max_inference_frames: largest S accepted by :meth:`generate` (128 = the published VSI-Bench
    evaluation). inference_frames: how generation prompts lay frames out for the 2-frame temporal
    patches: ``"native"`` (consecutive frames share a patch, as the released evaluation and the HF
    processor do) or ``"duplicate"`` (each frame twice, as in training). frame_size: ``[H, W]`` each
    frame is resized to (rounded to the vision patch × merge factor); ``None`` keeps the aspect ratio
    under Qwen's own smart resize: per frame within ``[min_pixels, max_pixels]`` and, when set, a whole-
    video budget ``[video_min_pixels, video_max_pixels]`` (Qwen3-VL's video rule; Qwen2.5-VL caps each
    frame at ``video_max_pixels / S``). inference_min_pixels/inference_max_pixels: per-frame bounds for
    the native generation layout (the released evaluation: 4·32·32 .. 384·32·32 per frame, whatever the
    frame count); unset = the training rule above. video_fps: frame rate assumed when a batch carries no
    ``frame_times`` (seconds = ``frame_indices / video_fps``); batches with ``frame_times`` use those.
    system_prompt: system message of the chat. max_new_tokens: default generation length.
    """

    pretrained: str = "Qwen/Qwen3-VL-2B-Instruct"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    gradient_checkpointing: bool = False
    freeze: list[str] = attrs.field(factory=lambda: ["vision"])
    lora: dict | None = None
    adapter: str | None = None
    max_frames: int = 32
    max_inference_frames: int = 128
    inference_frames: Literal["native", "duplicate"] = "native"
    frame_size: list[int] | None = None
    min_pixels: int = 56 * 56
    max_pixels: int = 448 * 448
    video_min_pixels: int | None = None
    video_max_pixels: int | None = None
    inference_min_pixels: int | None = None
    inference_max_pixels: int | None = None
    video_fps: float = 2.0
    system_prompt: str = "You are a helpful assistant."
    max_new_tokens: int = 16
    #: backbone component these options belong to (not an option)
    _kind = "qwen3_vl"

    def build_meta(self):
        """The student on the meta device and its sizes (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_qwen_vl.sizing import build_meta

        return build_meta(self, self._kind)

    def preflight(self) -> list[str]:
        """The checkpoint (local directory, or HF id in the local cache: no network) and adapter must be there."""
        tiny = self.pretrained == "geovr-tiny" or self.pretrained.startswith("geovr-tiny-")
        source = [] if tiny else checkpoint_source(self.pretrained, "pretrained")
        return source + missing_path(self.adapter, "adapter", kind="dir")

    def check(self) -> list[str]:
        """Cross-field problems (returned, not raised, so the recipe validator lists them all)."""
        problems = []
        bad = sorted(set(self.freeze) - set(FREEZABLE))
        if bad:
            problems.append(f"freeze: unknown part(s) {bad}; choose from {list(FREEZABLE)}")
        if self.lora is not None:
            unknown = sorted(set(self.lora) - set(LORA_KEYS))
            if unknown:
                problems.append(f"lora: unknown key(s) {unknown}; valid keys: {list(LORA_KEYS)}")
            rank = self.lora.get("rank", 8)
            if not isinstance(rank, int) or rank <= 0:
                problems.append(f"lora.rank: expected a positive int, got {rank!r}")
            tm = self.lora.get("target_modules", list(DEFAULT_LORA_TARGETS))
            if not (isinstance(tm, list) and tm and all(isinstance(t, str) for t in tm)):
                problems.append(f"lora.target_modules: expected a non-empty list of module names, got {tm!r}")
        if self.frame_size is not None and (len(self.frame_size) != 2 or min(self.frame_size) <= 0):
            problems.append(f"frame_size: expected [H, W] with positive ints, got {self.frame_size!r}")
        if self.max_frames <= 0:
            problems.append(f"max_frames: expected a positive int, got {self.max_frames}")
        if self.max_inference_frames <= 0:
            problems.append(f"max_inference_frames: expected a positive int, got {self.max_inference_frames}")
        for key in ("video_min_pixels", "video_max_pixels", "inference_min_pixels", "inference_max_pixels"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                problems.append(f"{key}: expected a positive int or unset, got {v}")
        if (self.video_min_pixels or 0) > (self.video_max_pixels or float("inf")):
            problems.append(
                f"video_min_pixels/video_max_pixels: need min <= max, got "
                f"{self.video_min_pixels}/{self.video_max_pixels}"
            )
        if not 0 < self.min_pixels <= self.max_pixels:
            problems.append(
                f"min_pixels/max_pixels: need 0 < min_pixels <= max_pixels, got {self.min_pixels}/{self.max_pixels}"
            )
        if self.video_fps <= 0:
            problems.append(f"video_fps: expected > 0, got {self.video_fps}")
        return problems


@attrs.define
class Qwen3VLBackboneConfig(QwenVLBackboneConfig):
    """Options of the ``qwen3_vl`` backbone (see :class:`QwenVLBackboneConfig`)."""

    pretrained: str = "Qwen/Qwen3-VL-2B-Instruct"
    _kind = "qwen3_vl"


@attrs.define
class Qwen25VLBackboneConfig(QwenVLBackboneConfig):
    """Options of the ``qwen2_5_vl`` backbone (see :class:`QwenVLBackboneConfig`)."""

    pretrained: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    _kind = "qwen2_5_vl"
