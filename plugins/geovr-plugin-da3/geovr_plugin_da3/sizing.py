"""Sizing of the ``da3`` / ``da3_metric`` teachers for ``geovr plan`` / ``geovr cache --estimate``
(see :mod:`geovr.sizing`)."""

from __future__ import annotations

from collections.abc import Sequence

from geovr.sizing import CacheLayout, TeacherMeta, vit_flops


def _grid(cfg, arch: dict, H: int, W: int) -> tuple[int, int, int, int, int]:
    """``(h, w, gh, gw, patch)``: working resolution and patch grid for ``H×W`` frames."""
    from geovr_plugin_da3.preprocess import target_size

    h, w = target_size(H, W, cfg.image_size, cfg.multiple)
    p = int(arch["backbone"]["patch_size"])
    return h, w, h // p, w // p, p


def _flops(arch: dict, S: int, gh: int, gw: int) -> float:
    """Backbone blocks: per-view attention before ``alt_start``, then alternating per-view / all-view
    attention (every other block global), one camera token per view when ``alt_start >= 0``; MLP ratio
    from the config (SwiGLU counted as a plain MLP of that ratio). The heads are not counted."""
    bb = arch["backbone"]
    dim, depth, ratio = int(bb["embed_dim"]), int(bb["depth"]), float(bb.get("mlp_ratio", 4))
    alt = int(bb.get("alt_start", -1))
    P = gh * gw + (1 if alt >= 0 else 0)
    if alt < 0:
        return vit_flops(P, S, dim, depth, mlp_ratio=ratio)
    glob = (depth - alt) // 2
    return vit_flops(P, S, dim, depth - glob, mlp_ratio=ratio) + vit_flops(P, S, dim, glob, span=S * P, mlp_ratio=ratio)


def cache_layout(cfg, S: int, H: int, W: int, layers: Sequence[int]) -> CacheLayout:
    """``da3``: features ``[S, gh (/2), gw (/2), C]`` per layer (the asked ones plus the teacher's
    own ``feature_layers()``, as the real teacher requests them), depth / depth_conf ``[S, h, w]``, points ``[S, h, w, 3]``, cameras."""
    arch = cfg.arch()
    h, w, gh, gw, _ = _grid(cfg, arch, H, W)
    ph, pw = (gh // 2, gw // 2) if cfg.pool == 2 else (gh, gw)
    c = int(arch["backbone"]["embed_dim"])
    shapes = {f"features.{layer}": (S, ph, pw, c) for layer in sorted({*layers, *cfg.feature_layers()})}
    shapes.update(
        depth=(S, h, w),
        depth_conf=(S, h, w),
        points=(S, h, w, 3),
        pose_enc=(S, 9),
        intrinsics=(S, 3, 3),
        extrinsics=(S, 3, 4),
    )
    return CacheLayout(
        shapes,
        _flops(arch, S, gh, gw),
        f"DA3 {cfg.model_config} {h}x{w} input, {gh}x{gw} patches, features {ph}x{pw}x{c}",
    )


def metric_cache_layout(cfg, S: int, H: int, W: int, layers: Sequence[int] = ()) -> CacheLayout:
    """``da3_metric``: ``metric_depth [S, h, w]`` at the working resolution."""
    arch = cfg.arch()
    h, w, gh, gw, _ = _grid(cfg, arch, H, W)
    return CacheLayout(
        {"metric_depth": (S, h, w)},
        _flops(arch, S, gh, gw),
        f"DA3 metric {cfg.model_config} {h}x{w} input, {gh}x{gw} patches",
    )


def build_meta(cfg) -> TeacherMeta:
    """The DA3 network on the meta device; feature layers / width for ``da3``, none for ``da3_metric``."""
    import torch

    from geovr_plugin_da3.arch import arch_depth, is_metric
    from geovr_plugin_da3.model import DA3Net

    arch = cfg.arch()
    with torch.device("meta"):
        net = DA3Net(arch)
    if is_metric(arch):
        return TeacherMeta(module=net)
    return TeacherMeta(
        module=net,
        num_layers=arch_depth(arch),
        feature_dim=int(arch["backbone"]["embed_dim"]),
        layers=tuple(cfg.feature_layers()),
    )
