"""Loading Qwen-VL checkpoints: availability checks, attention kernel, freezing, LoRA, export."""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings

import attrs
import torch

from geovr.errors import CheckpointError
from geovr_plugin_qwen_vl.config import DEFAULT_LORA_TARGETS, QwenVLBackboneConfig

log = logging.getLogger(__name__)

#: ``model_type`` of the HF config accepted by each backbone name.
MODEL_TYPES = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl"}


def model_class(kind: str):
    """The transformers ``*ForConditionalGeneration`` class of ``kind``."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration if kind == "qwen2_5_vl" else Qwen3VLForConditionalGeneration


def resolve_attn_implementation(requested: str) -> str:
    """Return the attention kernel to use; ``flash_attention_2`` without flash-attn or CUDA falls
    back to ``sdpa`` with a loud warning."""
    if requested != "flash_attention_2":
        return requested
    missing = []
    if importlib.util.find_spec("flash_attn") is None:
        missing.append("the flash-attn package is not installed")
    if not torch.cuda.is_available():
        missing.append("no CUDA device is available")
    if missing:
        msg = (
            f"attn_implementation='flash_attention_2' requested but {' and '.join(missing)}; "
            "FALLING BACK to 'sdpa' (slower, more memory)"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        log.warning(msg)
        return "sdpa"
    return requested


def check_available(pretrained: str) -> None:
    """Raise :class:`CheckpointError` early when ``pretrained`` is neither a directory nor cached and
    the hub is unreachable by configuration (``HF_HUB_OFFLINE``)."""
    if os.path.isdir(pretrained):
        return
    if os.path.sep in pretrained.strip("/").split("/", 1)[-1] or pretrained.startswith((".", "/")):
        raise CheckpointError(f"pretrained={pretrained!r}: no such local directory")
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(pretrained, "config.json")
    if not isinstance(cached, str) and constants.HF_HUB_OFFLINE:
        raise CheckpointError(not_cached_message(pretrained))


def not_cached_message(pretrained: str) -> str:
    """The error text for a hub id that is not in the local cache while offline."""
    from huggingface_hub import constants

    return (
        f"pretrained={pretrained!r} is not a local directory and the Hugging Face model {pretrained!r} "
        f"is not in the local HF cache ({constants.HF_HUB_CACHE}) and cannot be downloaded here "
        f"(offline). Download it where the hub is reachable (`hf download {pretrained}`) into that "
        f"cache, or set `pretrained` to a local model directory."
    )


#: ``pretrained`` value naming the tiny random-initialised model of :mod:`geovr_plugin_qwen_vl.tiny_models`
#: (smoke tests and the CPU demo recipe; not a real checkpoint).
TINY_ID = "geovr-tiny"


def tiny_size(pretrained: str) -> str | None:
    """The size of a tiny random-init id (``"geovr-tiny"`` → ``"tiny"``, ``"geovr-tiny-small"`` →
    ``"small"``; sizes in :data:`geovr_plugin_qwen_vl.tiny_models.SIZES`), ``None`` for anything else."""
    from geovr_plugin_qwen_vl.tiny_models import SIZES

    if pretrained == TINY_ID:
        return "tiny"
    if pretrained.startswith(TINY_ID + "-") and pretrained[len(TINY_ID) + 1 :] in SIZES:
        return pretrained[len(TINY_ID) + 1 :]
    return None


def materialize_tiny(kind: str, size: str = "tiny") -> str:
    """Write the tiny random-init ``kind`` checkpoint once into ``$GEOVR_CACHE_DIR/tiny`` (default
    ``~/.cache/geovr/tiny``) with ``save_pretrained`` and return its directory. The write goes to a
    temporary directory renamed into place, so a crash never leaves a half-written checkpoint."""
    import shutil
    import tempfile

    from geovr_plugin_qwen_vl.tiny_models import save_tiny_checkpoint

    root = os.path.join(os.environ.get("GEOVR_CACHE_DIR") or os.path.expanduser("~/.cache/geovr"), "tiny")
    dest = os.path.join(root, f"{kind}-seed0" if size == "tiny" else f"{kind}-{size}-seed0")
    if os.path.isfile(os.path.join(dest, "config.json")):
        return dest
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{kind}-", dir=root)
    try:
        save_tiny_checkpoint(kind, tmp, seed=0, size=size)
        os.replace(tmp, dest)
    except OSError:
        if not os.path.isfile(os.path.join(dest, "config.json")):  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def load_model_and_processor(kind: str, config: QwenVLBackboneConfig):
    """Load the HF model (dtype, attention kernel) and processor of ``config.pretrained``; raise
    :class:`CheckpointError` naming the path/id when it is missing, offline or of the wrong family.
    ``pretrained = "geovr-tiny"`` loads the tiny random model (see :func:`materialize_tiny`)."""
    from transformers import AutoConfig, AutoProcessor

    if tiny_size(config.pretrained):
        config = attrs.evolve(config, pretrained=materialize_tiny(kind, tiny_size(config.pretrained)))
    check_available(config.pretrained)
    try:
        hf_config = AutoConfig.from_pretrained(config.pretrained)
    except (OSError, ValueError) as exc:
        if os.path.isdir(config.pretrained):
            raise CheckpointError(f"pretrained={config.pretrained!r}: cannot read config.json: {exc}") from exc
        raise CheckpointError(not_cached_message(config.pretrained) + f" ({type(exc).__name__}: {exc})") from exc
    if hf_config.model_type != MODEL_TYPES[kind]:
        raise CheckpointError(
            f"pretrained={config.pretrained!r} is a {hf_config.model_type!r} checkpoint, but "
            f"backbone {kind!r} needs model_type {MODEL_TYPES[kind]!r}"
        )
    dtype = config.dtype if config.dtype == "auto" else getattr(torch, config.dtype)
    attn = resolve_attn_implementation(config.attn_implementation)
    try:
        model = model_class(kind).from_pretrained(config.pretrained, dtype=dtype, attn_implementation=attn)
        processor = AutoProcessor.from_pretrained(config.pretrained)
    except OSError as exc:
        raise CheckpointError(f"pretrained={config.pretrained!r}: cannot load model/processor: {exc}") from exc
    return processor, model


def model_part(name: str) -> str:
    """Which freezable part (``vision``/``merger``/``llm``) an HF parameter name belongs to."""
    if name.startswith("model.visual."):
        return "merger" if name.startswith(("model.visual.merger", "model.visual.deepstack_merger")) else "vision"
    return "llm"


def apply_freeze(hf, parts) -> None:
    """Set ``requires_grad`` of every HF parameter: False for the parts listed in ``parts``."""
    for name, p in hf.named_parameters():
        p.requires_grad_(model_part(name) not in parts)


def wrap_lora(hf, config: QwenVLBackboneConfig):
    """Wrap ``hf`` in a peft model: the saved LoRA of ``config.adapter`` if it has one, else a new
    LoRA from ``config.lora``; unchanged when neither applies."""
    has_saved = bool(config.adapter) and os.path.isfile(os.path.join(config.adapter, "adapter_config.json"))
    if config.lora is None and not has_saved:
        return hf
    from peft import LoraConfig, PeftModel, get_peft_model

    if has_saved:
        return PeftModel.from_pretrained(hf, config.adapter, is_trainable=True)
    lora = config.lora
    names = "|".join(lora.get("target_modules", list(DEFAULT_LORA_TARGETS)))
    target = rf".*language_model\.layers\.\d+\..*\.({names})"
    peft_cfg = LoraConfig(
        r=int(lora.get("rank", 8)),
        lora_alpha=float(lora.get("alpha", 16)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=target,
    )
    return get_peft_model(hf, peft_cfg)


def plain_state_dict(model, hf) -> dict:
    """State dict of ``hf`` (wrapped by ``model``, a peft model when LoRA is on) under HF names.

    With LoRA each adapted weight is ``W + ΔW``, computed out of place: the live model is not
    modified, so exporting during training causes no merge/unmerge drift."""
    if model is hf:
        return hf.state_dict()
    from peft.tuners.lora import LoraLayer

    merged = {}
    for name, module in hf.named_modules():
        if isinstance(module, LoraLayer):
            w = module.get_base_layer().weight
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            merged[f"{name}.weight"] = (w + delta.to(w.dtype)).detach()
    sd = {}
    for k, v in hf.state_dict().items():
        if "lora_" in k:
            continue
        k = k.replace(".base_layer.", ".")
        sd[k] = merged.get(k, v)
    return sd
