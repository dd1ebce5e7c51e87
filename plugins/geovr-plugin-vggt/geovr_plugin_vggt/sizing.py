"""Sizing of the ``vggt`` teacher for ``geovr plan`` / ``geovr cache --estimate`` (see :mod:`geovr.sizing`)."""

from __future__ import annotations

from collections.abc import Sequence

from geovr.sizing import CacheLayout, TeacherMeta, vit_flops

PATCH = 14


def working_size(cfg, H: int, W: int) -> tuple[int, int]:
    """``(h, w)`` pixels the aggregator sees for ``H×W`` frames (see :mod:`geovr_plugin_vggt.preprocess`)."""
    from geovr_plugin_vggt.preprocess import target_size

    h, w = target_size(H, W, cfg.image_size, cfg.resize_mode, cfg.size_multiple)
    if cfg.resize_mode == "crop":
        h = min(h, cfg.image_size)
    elif cfg.resize_mode == "pad":
        h = w = cfg.image_size
    return h, w


def cache_layout(cfg, S: int, H: int, W: int, layers: Sequence[int]) -> CacheLayout:
    """Outputs of one sample: features ``[S, h/14 (/2 pooled), w/14 (/2), C or 2C]`` per layer, depth /
    depth_conf ``[S, h, w]``, points ``[S, h, w, 3]``, cameras; FLOPs of the DINOv2 patch embedding and the
    frame + global attention blocks (the dense / camera heads are not counted)."""
    from geovr_plugin_vggt.config import config_depth
    from geovr_plugin_vggt.model.vggt import load_config

    h, w = working_size(cfg, H, W)
    dim = int(load_config(cfg.model_config).get("embed_dim") or 1024)
    depth = config_depth(cfg.model_config) or 24
    gh, gw = h // PATCH, w // PATCH
    ph, pw = (gh // 2, gw // 2) if cfg.pool == 2 else (gh, gw)
    c = 2 * dim if cfg.feature_half == "both" else dim
    shapes = {f"features.{layer}": (S, ph, pw, c) for layer in layers}
    shapes.update(
        depth=(S, h, w),
        depth_conf=(S, h, w),
        points=(S, h, w, 3),
        pose_enc=(S, 9),
        intrinsics=(S, 3, 3),
        extrinsics=(S, 3, 4),
    )
    P = gh * gw + 5  # patches + camera and register tokens
    flops = vit_flops(gh * gw, S, dim, depth)  # DINOv2 patch embedding (ViT-L for the 1B)
    flops += vit_flops(P, S, dim, depth)  # frame attention blocks
    flops += vit_flops(P, S, dim, depth, span=S * P)  # global attention blocks
    return CacheLayout(shapes, flops, f"VGGT {h}x{w} input, {gh}x{gw} patches, features {ph}x{pw}x{c}")


def build_meta(cfg) -> TeacherMeta:
    """VGGT on the meta device (no tracking head; the point head only with ``points = "head"``)."""
    import torch

    from geovr_plugin_vggt.model.vggt import VGGT, load_config

    mc = load_config(cfg.model_config)
    with torch.device("meta"):
        m = VGGT.from_config(mc, enable_track=False, enable_point=cfg.points == "head")
    embed = int(mc["embed_dim"])
    return TeacherMeta(module=m, num_layers=m.depth, feature_dim=2 * embed if cfg.feature_half == "both" else embed)
