"""Sizing of the ``dust3r`` teacher for ``geovr plan`` / ``geovr cache --estimate`` (see :mod:`geovr.sizing`)."""

from __future__ import annotations

from collections.abc import Sequence

from geovr.sizing import CacheLayout, TeacherMeta, vit_flops


def network_pairs(cfg, S: int) -> int:
    """Ordered image pairs the network runs on for one ``S``-frame video: the pair graph's edges with
    global alignment (``S > 2``), else every frame with its anchor in both orders."""
    if cfg.alignment == "global" and S > 2:
        from geovr_plugin_dust3r.global_align import make_edges

        return len(make_edges(S, cfg.graph))
    return max(1, 2 * (S - 1))


def cache_layout(cfg, S: int, H: int, W: int, layers: Sequence[int]) -> CacheLayout:
    """Features ``[S, H'/16, W'/16, C_dec]`` per layer (the asked ones plus the teacher's own ``feature_layers()``, as the real teacher requests them),
    depth / depth_conf ``[S, H', W']``, points ``[S, H', W', 3]``, cameras at the working resolution
    ``H'×W'``. FLOPs per ordered pair: the encoder on both images and both decoder branches (self- and
    cross-attention, MLP); the DPT heads and the global alignment's iterations are not counted."""
    from geovr_plugin_dust3r.preprocess import plan

    arch = cfg.arch()
    _, (_, _, h, w) = plan(H, W, cfg.image_size, cfg.square_ok, cfg.crop)
    p = arch.patch_size
    gh, gw = h // p, w // p
    c = arch.dec_embed_dim
    shapes = {f"features.{layer}": (S, gh, gw, c) for layer in sorted({*layers, *cfg.feature_layers()})}
    shapes.update(
        depth=(S, h, w),
        depth_conf=(S, h, w),
        points=(S, h, w, 3),
        pose_enc=(S, 9),
        intrinsics=(S, 3, 3),
        extrinsics=(S, 3, 4),
    )
    N, d, r = gh * gw, arch.dec_embed_dim, arch.mlp_ratio
    per_pair = vit_flops(N, 2, arch.enc_embed_dim, arch.enc_depth, mlp_ratio=r)  # encoder, both images
    per_pair += vit_flops(N, 2, d, arch.dec_depth, mlp_ratio=r)  # decoder self-attn + MLP
    per_pair += 2 * arch.dec_depth * N * (8.0 * d * d + 4.0 * N * d)  # decoder cross-attention
    pairs = network_pairs(cfg, S)
    return CacheLayout(
        shapes,
        pairs * per_pair,
        f"DUSt3R {h}x{w} input, {gh}x{gw} patches, {pairs} image pairs, features {gh}x{gw}x{c}",
    )


def build_meta(cfg) -> TeacherMeta:
    """The DUSt3R network on the meta device; decoder depth and width as the feature layers / channels."""
    import torch

    from geovr_plugin_dust3r.model import AsymmetricCroCo3DStereo

    arch = cfg.arch()
    with torch.device("meta"):
        model = AsymmetricCroCo3DStereo(arch)
    return TeacherMeta(
        module=model, num_layers=arch.dec_depth, feature_dim=arch.dec_embed_dim, layers=tuple(cfg.feature_layers())
    )
