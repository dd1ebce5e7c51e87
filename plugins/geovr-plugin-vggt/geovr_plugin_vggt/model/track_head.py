"""VGGT track head (``track_head.*``): DPT feature maps + an iterative point tracker.

``TrackHead(tokens_list, images [B,S,3,H,W], patch_start_idx, query_points [B,N,2])`` →
``(tracks: list of iters × [B,S,N,2] pixels, vis [B,S,N], conf [B,S,N])``. Query points are ``(x, y)``
pixels in frame 0; frame 0 of every track stays pinned to its query.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

from geovr_plugin_vggt.model.dpt_head import DPTHead


def bilinear_sample(fmap: Tensor, coords: Tensor, padding_mode: str) -> Tensor:
    """Sample ``fmap [N,C,H,W]`` at pixel coordinates ``coords [N,...,2]`` (x, y; pixel centres at
    integers, align_corners=True) → ``[N,C,...]``."""
    H, W = fmap.shape[-2:]
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], dtype=coords.dtype, device=coords.device)
    grid = coords * scale - 1
    extra = grid.shape[1:-1]
    out = F.grid_sample(
        fmap, grid.reshape(grid.shape[0], -1, 1, 2), mode="bilinear", padding_mode=padding_mode, align_corners=True
    )
    return out.reshape(fmap.shape[0], fmap.shape[1], *extra)


def sample_points(fmap: Tensor, points: Tensor) -> Tensor:
    """``fmap [B,C,H,W]`` sampled at ``points [B,N,2]`` with border padding → ``[B,N,C]``."""
    return bilinear_sample(fmap, points, "border").transpose(1, 2)


def flow_embedding(flows: Tensor, channels: int) -> Tensor:
    """Interleaved sin/cos code of ``flows [...,2]`` with ``channels`` values per coordinate
    (factors ``2k·1000/channels``) → ``[..., 2*channels]`` (x code, then y code)."""
    div = torch.arange(0, channels, 2, device=flows.device, dtype=torch.float32) * (1000.0 / channels)
    codes = []
    for t in flows.unbind(-1):
        ang = t[..., None] * div
        codes.append(torch.stack([ang.sin(), ang.cos()], dim=-1).flatten(-2))
    return torch.cat(codes, dim=-1)


def sincos_grid_embedding(channels: int, hh: int, ww: int, device) -> Tensor:
    """2D sin/cos embedding on an integer ``hh×ww`` grid → ``[1, channels, hh, ww]``; the first half
    encodes x (column), the second y (row), each ``[sin(p·ω), cos(p·ω)]`` with ``ω_k = 10000^(−k/(channels/4))``."""
    n = channels // 4
    omega = 1.0 / 10000.0 ** (torch.arange(n, dtype=torch.float64, device=device) / n)

    def code(p: Tensor) -> Tensor:
        ang = p.double()[:, None] * omega
        return torch.cat([ang.sin(), ang.cos()], dim=-1)

    ys, xs = torch.meshgrid(torch.arange(hh, device=device), torch.arange(ww, device=device), indexing="ij")
    emb = torch.cat([code(xs.reshape(-1)), code(ys.reshape(-1))], dim=-1).float()
    return emb.reshape(hh, ww, channels).permute(2, 0, 1)[None]


class CorrelationPyramid:
    """Correlation volumes of track features against a feature-map pyramid (``levels`` avg-pool levels)."""

    def __init__(self, fmaps: Tensor, levels: int, radius: int):
        B, S, C, H, W = fmaps.shape
        self.radius = radius
        self.pyramid = [fmaps]
        for _ in range(levels - 1):
            f = self.pyramid[-1]
            f = F.avg_pool2d(f.reshape(B * S, C, *f.shape[-2:]), kernel_size=2, stride=2)
            self.pyramid.append(f.reshape(B, S, C, *f.shape[-2:]))
        r = torch.arange(-radius, radius + 1, dtype=fmaps.dtype, device=fmaps.device)
        # flat index (a+r)(2r+1) + (b+r) holds Δx = a (outer), Δy = b (inner)
        dx, dy = torch.meshgrid(r, r, indexing="ij")
        self.delta = torch.stack([dx, dy], dim=-1).reshape(-1, 2)

    def sample(self, feats: Tensor, coords: Tensor) -> Tensor:
        """feats ``[B,S,N,C]``, coords ``[B,S,N,2]`` (feature-map pixels) → ``[B,S,N,levels·(2r+1)²]``."""
        B, S, N, C = feats.shape
        out = []
        for i, f in enumerate(self.pyramid):
            H, W = f.shape[-2:]
            corr = (feats @ f.reshape(B, S, C, H * W)) / C**0.5  # [B,S,N,HW]
            pts = coords.reshape(B * S * N, 1, 2) / 2**i + self.delta[None]
            sampled = bilinear_sample(corr.reshape(B * S * N, 1, H, W), pts, "zeros")
            out.append(sampled.reshape(B, S, N, -1))
        return torch.cat(out, dim=-1)


class SelfAttnBlock(nn.Module):
    """``x = LN1(x); x = x + MHA(x); x = x + MLP(LN2(x))`` (the residual restarts from the normed input)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """``[N,L,D]`` → ``[N,L,D]``."""
        x = self.norm1(x)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """Like :class:`SelfAttnBlock` but attending to a normalised context."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x ``[N,L,D]`` attends to context ``[N,M,D]`` → ``[N,L,D]``."""
        x = self.norm1(x)
        ctx = self.norm_context(context)
        x = x + self.cross_attn(x, ctx, ctx, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class UpdateFormer(nn.Module):
    """Time/space transformer over (track, frame) tokens with learned virtual tracks."""

    def __init__(
        self,
        *,
        input_dim: int,
        hidden_size: int,
        output_dim: int,
        depth: int,
        num_heads: int,
        num_virtual_tracks: int,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.virual_tracks = nn.Parameter(torch.zeros(1, num_virtual_tracks, 1, hidden_size))  # sic
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim)
        self.time_blocks = nn.ModuleList(SelfAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.space_virtual_blocks = nn.ModuleList(
            SelfAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.space_point2virtual_blocks = nn.ModuleList(
            CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.space_virtual2point_blocks = nn.ModuleList(
            CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x ``[B,N,S,input_dim]`` → ``[B,N,S,output_dim]``."""
        tokens = self.input_transform(self.input_norm(x))
        init = tokens
        B, N, S, D = tokens.shape
        V = self.num_virtual_tracks
        tokens = torch.cat([tokens, self.virual_tracks.expand(B, -1, S, -1).to(tokens.dtype)], dim=1)
        M = N + V
        for i in range(len(self.time_blocks)):
            tokens = self.time_blocks[i](tokens.reshape(B * M, S, D)).reshape(B, M, S, D)
            space = tokens.permute(0, 2, 1, 3).reshape(B * S, M, D)
            points, virtual = space[:, :N], space[:, N:]
            virtual = self.space_virtual2point_blocks[i](virtual, points)
            virtual = self.space_virtual_blocks[i](virtual)
            points = self.space_point2virtual_blocks[i](points, virtual)
            tokens = torch.cat([points, virtual], dim=1).reshape(B, S, M, D).permute(0, 2, 1, 3)
        tokens = tokens[:, :N] + init
        return self.flow_head(self.output_norm(tokens))


class Tracker(nn.Module):
    """Iterative tracker (``track_head.tracker.*``) on feature maps ``[B,S,latent,H/2,W/2]``."""

    def __init__(
        self,
        *,
        stride: int = 2,
        corr_levels: int = 7,
        corr_radius: int = 4,
        latent_dim: int = 128,
        hidden_size: int = 384,
        depth: int = 6,
        num_heads: int = 8,
        num_virtual_tracks: int = 64,
        max_scale: float = 518,
        mlp_ratio: float = 4.0,
        predict_conf: bool = True,
    ):
        super().__init__()
        self.stride, self.corr_levels, self.corr_radius = stride, corr_levels, corr_radius
        self.latent_dim, self.max_scale = latent_dim, max_scale
        self.flow_channels = latent_dim // 2
        self.transformer_dim = 3 * latent_dim + 4
        corr_dim = corr_levels * (2 * corr_radius + 1) ** 2
        self.query_ref_token = nn.Parameter(torch.zeros(1, 2, self.transformer_dim))
        self.corr_mlp = Mlp(corr_dim, hidden_size, latent_dim)
        self.updateformer = UpdateFormer(
            input_dim=self.transformer_dim,
            hidden_size=hidden_size,
            output_dim=latent_dim + 2,
            depth=depth,
            num_heads=num_heads,
            num_virtual_tracks=num_virtual_tracks,
            mlp_ratio=mlp_ratio,
        )
        self.fmap_norm = nn.LayerNorm(latent_dim)
        self.ffeat_norm = nn.GroupNorm(1, latent_dim)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent_dim, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent_dim, 1)) if predict_conf else None

    def forward(self, query_points: Tensor, fmaps: Tensor, iters: int = 4):
        """query_points ``[B,N,2]`` (input pixels), fmaps ``[B,S,C,h,w]`` → (list of ``[B,S,N,2]``
        pixel tracks, vis ``[B,S,N]``, conf ``[B,S,N]`` or ``None``)."""
        B, N, _ = query_points.shape
        _, S, C, hh, ww = fmaps.shape
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        query = query_points / float(self.stride)
        coords = query[:, None].expand(B, S, N, 2).clone()
        feats = sample_points(fmaps[:, 0], query)[:, None].expand(B, S, N, C).clone()  # [B,S,N,C]
        corr_fn = CorrelationPyramid(fmaps, self.corr_levels, self.corr_radius)
        pos = (
            sample_points(
                sincos_grid_embedding(self.transformer_dim, hh, ww, fmaps.device).expand(B, -1, -1, -1), query
            )
            .reshape(B * N, 1, -1)
            .to(fmaps.dtype)
        )
        ref = torch.cat([self.query_ref_token[:, :1], self.query_ref_token[:, 1:].expand(-1, S - 1, -1)], dim=1)
        preds = []
        for _ in range(iters):
            coords = coords.detach()
            corr = self.corr_mlp(corr_fn.sample(feats, coords).permute(0, 2, 1, 3).reshape(B * N, S, -1))
            flows = (coords - coords[:, :1]).permute(0, 2, 1, 3).reshape(B * N, S, 2)
            flow_emb = torch.cat(
                [flow_embedding(flows, self.flow_channels), flows / self.max_scale, flows / self.max_scale], dim=-1
            )
            feats_ = feats.permute(0, 2, 1, 3).reshape(B * N, S, C)
            x = torch.cat([flow_emb, corr, feats_], dim=-1) + pos + ref.to(fmaps.dtype)
            delta = self.updateformer(x.reshape(B, N, S, -1)).reshape(B * N * S, -1)
            feats_ = feats_.reshape(B * N * S, C) + self.ffeat_updater(self.ffeat_norm(delta[:, 2:]))
            feats = feats_.reshape(B, N, S, C).permute(0, 2, 1, 3)
            coords = coords + delta[:, :2].reshape(B, N, S, 2).permute(0, 2, 1, 3)
            coords[:, 0] = query
            preds.append(coords * self.stride)
        flat = feats.reshape(B * S * N, C)
        vis = torch.sigmoid(self.vis_predictor(flat)).reshape(B, S, N)
        conf = torch.sigmoid(self.conf_predictor(flat)).reshape(B, S, N) if self.conf_predictor is not None else None
        return preds, vis, conf


class TrackHead(nn.Module):
    """DPT feature extractor (``feature_only``, ``down_ratio`` 2, no pos-embed) + :class:`Tracker`."""

    def __init__(
        self,
        *,
        dim_in: int = 2048,
        patch_size: int = 14,
        features: int = 128,
        out_channels=(256, 512, 1024, 1024),
        intermediate_layer_idx=(4, 11, 17, 23),
        iters: int = 4,
        stride: int = 2,
        corr_levels: int = 7,
        corr_radius: int = 4,
        hidden_size: int = 384,
        tracker_depth: int = 6,
        tracker_num_heads: int = 8,
        num_virtual_tracks: int = 64,
        max_scale: float = 518,
        predict_conf: bool = True,
        down_ratio: int = 2,
    ):
        super().__init__()
        self.iters = iters
        self.feature_extractor = DPTHead(
            dim_in=dim_in,
            patch_size=patch_size,
            features=features,
            out_channels=out_channels,
            intermediate_layer_idx=intermediate_layer_idx,
            pos_embed=False,
            feature_only=True,
            down_ratio=down_ratio,
        )
        self.tracker = Tracker(
            stride=stride,
            corr_levels=corr_levels,
            corr_radius=corr_radius,
            latent_dim=features,
            hidden_size=hidden_size,
            depth=tracker_depth,
            num_heads=tracker_num_heads,
            num_virtual_tracks=num_virtual_tracks,
            max_scale=max_scale,
            predict_conf=predict_conf,
        )

    def forward(
        self,
        tokens_list: list[Tensor],
        images: Tensor,
        patch_start_idx: int,
        query_points: Tensor,
        iters: int | None = None,
    ):
        """See the module docstring."""
        fmaps = self.feature_extractor(tokens_list, images, patch_start_idx)
        return self.tracker(query_points, fmaps, iters or self.iters)
