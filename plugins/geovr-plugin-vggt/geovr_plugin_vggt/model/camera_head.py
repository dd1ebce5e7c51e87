"""VGGT camera head (``camera_head.*``): iterative refinement of the pose encoding.

Input: the aggregator output list (``[B,S,P,2C]`` entries); the camera-token slot (token 0) of the last
entry conditions an adaLN-modulated trunk of transformer blocks that attends over the S frames.
Output: list of ``num_iterations`` pose encodings ``[B,S,9]`` = ``[t(3), q_xyzw(4), fov_h, fov_w]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

from geovr_plugin_vggt.model.layers import Block


def activate_pose(raw: Tensor, trans_act: str = "linear", quat_act: str = "linear", fl_act: str = "relu") -> Tensor:
    """Apply the output activations to a raw encoding ``[...,9]`` (translation, quaternion, FoV)."""

    def act(x: Tensor, kind: str) -> Tensor:
        if kind == "linear":
            return x
        if kind == "relu":
            return F.relu(x)
        if kind == "exp":
            return x.exp()
        raise ValueError(f"unknown pose activation {kind!r}")

    return torch.cat([act(raw[..., :3], trans_act), act(raw[..., 3:7], quat_act), act(raw[..., 7:], fl_act)], dim=-1)


class CameraHead(nn.Module):
    """Camera head with ``trunk_depth`` blocks at width ``dim_in`` (= 2C), ``num_iterations`` refinements."""

    def __init__(
        self,
        *,
        dim_in: int = 2048,
        trunk_depth: int = 4,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
        num_iterations: int = 4,
        trans_act: str = "linear",
        quat_act: str = "linear",
        fl_act: str = "relu",
        target_dim: int = 9,
    ):
        super().__init__()
        self.num_iterations = num_iterations
        self.acts = (trans_act, quat_act, fl_act)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, target_dim))
        self.trunk = nn.Sequential(
            *[
                Block(dim_in, num_heads, mlp_ratio=mlp_ratio, init_values=init_values, norm_eps=1e-5)
                for _ in range(trunk_depth)
            ]
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.embed_pose = nn.Linear(target_dim, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, target_dim)

    def forward(self, tokens_list: list[Tensor], num_iterations: int | None = None) -> list[Tensor]:
        """tokens_list: aggregator outputs ``[B,S,P,2C]`` → list of pose encodings ``[B,S,9]``."""
        cond = self.token_norm(tokens_list[-1][:, :, 0])  # [B,S,2C]
        B, S, _ = cond.shape
        raw = None
        out = []
        for _ in range(num_iterations or self.num_iterations):
            if raw is None:
                e = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1))
            else:
                e = self.embed_pose(raw.detach())
            shift, scale, gate = self.poseLN_modulation(e).chunk(3, dim=-1)
            z = gate * (self.adaln_norm(cond) * (1 + scale) + shift) + cond
            for blk in self.trunk:
                z = blk(z)
            delta = self.pose_branch(self.trunk_norm(z))
            raw = delta if raw is None else raw + delta
            out.append(activate_pose(raw, *self.acts))
        return out
