"""Sizing interface: how a component describes its own size to ``geovr plan`` and ``geovr cache --estimate``.

The core never imports a plugin and never dispatches on component names: it asks the component's attrs
config (what a recipe validates into, before anything is built) through the optional methods below.
Config modules stay torch-free at import; these methods import torch / the model code inside.

Teacher configs (``[teacher]`` and ``[metric_teacher]``)::

    def cache_layout(self, frames: int, height: int, width: int, layers: Sequence[int]) -> CacheLayout
        # what encode() returns for ONE sample of `frames` frames of `height`×`width` pixels, after the
        # teacher's own pre-processing and pooling: per flat output name ("features.<layer>", "depth",
        # "metric_depth", ... as in TeacherOutput.to_tensors) its shape WITHOUT the batch dimension
        # (e.g. "depth": (S, H', W')), plus the forward FLOPs of one sample. `layers` = the feature layers
        # the recipe asks for (empty for a metric teacher).

    def build_meta(self) -> TeacherMeta
        # the network on the meta device (torch.device("meta"): no weights, no download) for parameter
        # counts, with the feature depth / width objectives size their heads from. module = None for a
        # teacher with no network (the oracle).

Backbone configs (``[backbone]``)::

    def build_meta(self) -> BackboneMeta
        # the student on the meta device with the recipe's freeze / LoRA options applied exactly as the
        # real build does (requires_grad tells trainable from frozen), and the numbers plan needs
        # (see BackboneMeta: hidden size, layers, visual tokens per sample, activation bytes).

Everything is optional: a component without ``cache_layout`` / ``build_meta`` still trains; ``geovr plan``
and ``geovr cache --estimate`` then stop with :class:`SizingError` (exit 2) naming the component, its
plugin and distribution and the method to implement. Helpers shared by implementations:
:func:`vit_flops` (FLOPs of ViT blocks), :func:`decoder_activation_bytes` (what autograd keeps for one
HF Llama/Qwen-style decoder), :func:`read_json_resource`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from geovr.errors import GeovrError


@attrs.frozen
class CacheLayout:
    """Per-sample outputs of a teacher (see the module docstring).

    shapes: flat output name → shape without the batch dimension, e.g. ``{"features.4": (S, h, w, C),
    "depth": (S, H', W'), "pose_enc": (S, 9), "metric_scale": ()}``. flops: forward FLOPs of one sample
    (0 for a teacher with no network). note: one line for the report (input size, patch grid, ...).
    """

    shapes: dict[str, tuple[int, ...]]
    flops: float = 0.0
    note: str = ""


@attrs.frozen
class TeacherMeta:
    """A teacher sized on the meta device.

    module: ``torch.nn.Module`` on the meta device (or ``None``: no network, no parameters). num_layers:
    feature layers objectives may index (0..num_layers-1); feature_dim: channels ``C`` of
    ``features.<layer>`` (0 when the teacher gives no features); weight_dtype: dtype of the weights on
    the GPU (``"float32"``, ``"bfloat16"``); layers: default feature layers when the config's own
    ``layers`` option is unset (empty: use the config's ``layers``).
    """

    module: Any = None
    num_layers: int = 0
    feature_dim: int = 0
    weight_dtype: str = "float32"
    layers: tuple[int, ...] = ()


@attrs.frozen
class VisualTokens:
    """Visual tokens of one training sample: ``count`` in the sequence, ``grid`` = ``(h, w)`` tokens per
    frame (what dense heads see), ``frame_size`` = ``(H, W)`` pixels of a frame after the backbone's resize."""

    count: int
    grid: tuple[int, int]
    frame_size: tuple[int, int]


@runtime_checkable
class BackboneMeta(Protocol):
    """What a backbone config's ``build_meta()`` returns.

    module: the student on the meta device, freeze / LoRA applied. hidden_size, num_layers: of the LLM
    (objective heads are built from them). extra_trainable: trainable parameters outside ``module``
    (e.g. the geometry-token embeddings).
    """

    module: Any
    hidden_size: int
    num_layers: int
    extra_trainable: int

    def visual_tokens(self, frames: int, height: int, width: int) -> VisualTokens:
        """Visual tokens of one sample of ``frames`` frames of ``height``×``width`` pixels."""

    def activation_bytes(self, tokens: int, visual_tokens: int, bytes_per_value: int, checkpointing: bool) -> float:
        """Bytes autograd keeps for backward for one sample of ``tokens`` tokens (``visual_tokens`` of them
        visual), activations stored with ``bytes_per_value`` bytes, with/without gradient checkpointing."""


class SizingError(GeovrError):
    """A component cannot describe its size (exit code 2: a recipe/plugin limitation, not a crash)."""

    exit_code = 2


def require(kind: str, component: str, config, method: str, purpose: str, where: str | None = None):
    """``getattr(config, method)`` or a :class:`SizingError` naming the component, its plugin and
    distribution (from the registry) and what to implement."""
    fn = getattr(config, method, None)
    if callable(fn):
        return fn
    try:
        from geovr.plugins import get_registry

        spec = get_registry().get(kind, component)
        origin = f"plugin {spec.plugin!r}, distribution {spec.distribution!r}"
    except GeovrError:
        origin = "plugin unknown"
    place = f"[{where}] " if where else ""
    raise SizingError(
        f"{place}{kind} {component!r} ({origin}) cannot be sized for {purpose}: its config class "
        f"{type(config).__qualname__} has no {method}() method. The plugin implements it as described "
        f"in docs/plugin-hooks.md (sizing interface, geovr.sizing)"
    )


def vit_flops(
    tokens_per_image: int, images: int, dim: int, depth: int, span: int | None = None, mlp_ratio: float = 4.0
) -> float:
    """Forward FLOPs of ``depth`` transformer blocks over ``images × tokens_per_image`` tokens, each token
    attending over ``span`` tokens (default: its own image): per token and block, the qkv / out / MLP
    matmuls (``2·(4 + 2·mlp_ratio)·dim²``) and attention scores + values (``4·span·dim``)."""
    tokens = tokens_per_image * images
    span = tokens_per_image if span is None else span
    return depth * tokens * (2.0 * (4.0 + 2.0 * mlp_ratio) * dim * dim + 4.0 * span * dim)


def decoder_layer_bytes_per_token(D: int, I: int, H: int, KV: int, hd: int, b: int, qk_norm: bool) -> float:
    """Bytes one HF Llama/Qwen-style decoder layer keeps for backward per token: RMSNorm internals in
    float32 (input copy, normalised output, rsqrt) twice, q/k before and after the rotary embedding, SDPA
    with a flash/efficient kernel (q, k, v, out, logsumexp), the o_proj input, optional q/k norms (Qwen3)
    and the SiLU MLP (gate, act(gate), up, act·up). ``b`` = bytes per activation value."""
    norm = 4 * D + b * D + 4
    attn = b * (5 * H * hd + 4 * KV * hd) + 4 * H
    qk = ((4 + b) * (H + KV) * hd + 4 * (H + KV)) if qk_norm else 0
    mlp = 4 * b * I
    return 2 * norm + attn + qk + mlp


def decoder_activation_bytes(
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    vocab: int,
    tokens: int,
    b: int,
    checkpointing: bool,
    qk_norm: bool = False,
) -> float:
    """Activation bytes of an HF decoder LM over ``tokens`` tokens: ``layers`` decoder layers (with
    checkpointing: each layer's input plus one recomputed layer), the final norm, the LM-head input and
    the float32 log-softmax of the LM loss over the vocabulary."""
    D = hidden
    layer = decoder_layer_bytes_per_token(D, intermediate, heads, kv_heads, head_dim, b, qk_norm) * tokens
    body = (layers * tokens * b * D + layer) if checkpointing else layers * layer
    final = (4 * D + b * D + 4) * tokens + b * D * tokens
    logits = 4 * vocab * tokens
    return body + final + logits


def read_json_resource(package: str, resource: str) -> dict:
    """A JSON file shipped as package data of ``package`` (a plugin's model config)."""
    import json
    from importlib import resources

    return json.loads(resources.files(package).joinpath(resource).read_text())


def model_config_json(
    source: str,
    *,
    missing: str,
    package: str | None = None,
    shipped: dict[str, str] | None = None,
    hf_cache: bool = False,
) -> dict:
    """``config.json`` of checkpoint ``source`` without weights or network: a local directory's own file,
    else the copy ``package`` ships for its last path part (``shipped``: name → resource), else (with
    ``hf_cache``) the file in the local Hugging Face cache; otherwise :class:`SizingError` with ``missing``."""
    import json
    from pathlib import Path

    local = Path(source).expanduser() / "config.json"
    if local.is_file():
        return json.loads(local.read_text())
    name = source.rstrip("/").split("/")[-1]
    if package is not None and shipped and name in shipped:
        return read_json_resource(package, shipped[name])
    if hf_cache:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "config.json")
        except Exception:  # noqa: BLE001 (an id the hub library rejects: same answer as "not cached")
            cached = None
        if isinstance(cached, str) and Path(cached).is_file():
            return json.loads(Path(cached).read_text())
    raise SizingError(missing)


def layout_of(
    config, component: str, frames: int, height: int, width: int, layers: Sequence[int], where: str | None = None
) -> CacheLayout:
    """``config.cache_layout(...)`` of teacher ``component`` (a :class:`SizingError` when it has none)."""
    fn = require("teacher", component, config, "cache_layout", "the teacher-cache estimate", where)
    out = fn(frames, height, width, tuple(layers))
    if isinstance(out, dict):  # plain dicts are accepted: {"shapes": ..., "flops": ..., "note": ...}
        out = CacheLayout(
            shapes=dict(out.get("shapes", {})), flops=float(out.get("flops", 0.0)), note=str(out.get("note", ""))
        )
    return out


__all__ = [
    "BackboneMeta",
    "CacheLayout",
    "SizingError",
    "TeacherMeta",
    "VisualTokens",
    "decoder_activation_bytes",
    "decoder_layer_bytes_per_token",
    "layout_of",
    "read_json_resource",
    "require",
    "vit_flops",
]
