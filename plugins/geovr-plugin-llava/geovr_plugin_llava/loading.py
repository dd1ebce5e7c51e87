"""Loading a LLaVA-OneVision checkpoint (HF id or local directory), freezing and LoRA."""

from __future__ import annotations

import importlib.util
import os
import warnings

from geovr.errors import CheckpointError
from geovr_plugin_llava.config import FREEZE_PARTS

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or flag.upper() in {"1", "ON", "YES", "TRUE"}


def resolve_pretrained(pretrained: str) -> str:
    """Local directory of ``pretrained``: the directory itself, or the HF cache snapshot of an id.

    An id missing from the cache is returned unchanged when downloads are allowed (transformers then
    downloads it); offline it raises :class:`CheckpointError` naming the id.
    """
    expanded = os.path.expanduser(pretrained)
    if os.path.isdir(expanded):
        return expanded
    if pretrained.startswith((".", "/", "~")) or os.sep + os.sep in pretrained:
        raise CheckpointError(f"llava_onevision: pretrained directory {pretrained!r} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(pretrained, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        if _offline():
            raise CheckpointError(
                f"llava_onevision: {pretrained!r} is not in the local HF cache and the hub is offline "
                f"(HF_HUB_OFFLINE); download it first (`hf download {pretrained}`) or set "
                f"backbone.pretrained to a local model directory"
            ) from exc
        return pretrained


def attention_kernel(requested: str) -> str:
    """``requested`` when usable; ``flash_attention_2`` without flash-attn falls back to ``sdpa`` loudly."""
    if requested == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        warnings.warn(
            "llava_onevision: attn_implementation='flash_attention_2' requested but flash-attn is "
            "not installed; falling back to 'sdpa'",
            RuntimeWarning,
            stacklevel=2,
        )
        return "sdpa"
    return requested


def load(pretrained: str, *, dtype: str, attn_implementation: str):
    """Load ``(model, processor)``: ``LlavaOnevisionForConditionalGeneration`` + ``AutoProcessor``."""
    import torch
    from transformers import AutoConfig, AutoProcessor, LlavaOnevisionForConditionalGeneration

    path = resolve_pretrained(pretrained)
    torch_dtype = DTYPES[dtype] if dtype == "auto" else getattr(torch, DTYPES[dtype])
    try:
        # check the architecture before instantiating anything (a foreign config would otherwise be
        # filled with LLaVA-OneVision-7B defaults)
        model_type = getattr(AutoConfig.from_pretrained(path), "model_type", None)
        if model_type != "llava_onevision":
            raise CheckpointError(
                f"llava_onevision: {pretrained!r} holds a {model_type!r} model, expected a 'llava_onevision' checkpoint"
            )
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(
            path, dtype=torch_dtype, attn_implementation=attention_kernel(attn_implementation)
        )
        processor = AutoProcessor.from_pretrained(path)
    except OSError as exc:
        raise CheckpointError(
            f"llava_onevision: cannot load {pretrained!r}: it is not a local directory, not in the local "
            f"HF cache, and could not be downloaded ({type(exc).__name__}: {exc})"
        ) from exc
    return model, processor


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing of the HF model, non-reentrant (works with frozen inputs)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def freeze(model, parts: list[str]) -> None:
    """Set ``requires_grad=False`` on the named parts (see :data:`FREEZE_PARTS`) of an HF model."""
    named = list(model.named_parameters())  # tied weights (lm_head = embed_tokens) appear once
    for part in parts:
        fulls = [f"model.{prefix}" if prefix != "lm_head" else prefix for prefix in FREEZE_PARTS[part]]
        hits = [p for n, p in named if any(n == f or n.startswith(f + ".") for f in fulls)]
        if not hits:
            raise CheckpointError(f"llava_onevision: freeze {part!r}: no parameters under {fulls}")
        for p in hits:
            p.requires_grad_(False)


def add_lora(model, options: dict):
    """Inject LoRA adapters into the language model's ``target_modules`` (in place); returns the
    ``PeftModel`` wrapper. Every non-adapter weight is frozen."""
    from peft import LoraConfig, get_peft_model

    names = "|".join(options["target_modules"])
    config = LoraConfig(
        r=options["rank"],
        lora_alpha=options["alpha"],
        lora_dropout=options["dropout"],
        target_modules=rf".*language_model\..*\.({names})",
        bias="none",
    )
    return get_peft_model(model, config)
