"""The VGGT model: aggregator + camera, depth, point and track heads.

``VGGT()`` is the official 1B configuration (parameter names and shapes of the ``facebook/VGGT-1B``
checkpoint); :meth:`VGGT.from_config` builds any size from a config dict such as the ``tiny`` entry
of the golden ``tiny_config.json``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from geovr_plugin_vggt.model.aggregator import Aggregator
from geovr_plugin_vggt.model.camera_head import CameraHead
from geovr_plugin_vggt.model.dpt_head import DPTHead
from geovr_plugin_vggt.model.layers import set_attention_backend
from geovr_plugin_vggt.model.track_head import TrackHead

#: the official 1B configuration, in the layout of ``tiny_config.json``
VGGT_1B_CONFIG: dict = {
    "img_size": 518,
    "patch_size": 14,
    "embed_dim": 1024,
    "aggregator": {
        "depth": 24,
        "num_heads": 16,
        "mlp_ratio": 4.0,
        "num_register_tokens": 4,
        "qkv_bias": True,
        "proj_bias": True,
        "ffn_bias": True,
        "qk_norm": True,
        "rope_freq": 100,
        "init_values": 0.01,
    },
    "patch_embed": {
        "embed_dim": 1024,
        "depth": 24,
        "num_heads": 16,
        "mlp_ratio": 4,
        "num_register_tokens": 4,
        "layerscale_init": 1.0,
        "layernorm_eps": 1e-6,
        "pos_embed_grid": [37, 37],
    },
    "camera_head": {
        "dim_in": 2048,
        "trunk_depth": 4,
        "num_heads": 16,
        "mlp_ratio": 4,
        "init_values": 0.01,
        "num_iterations": 4,
        "trans_act": "linear",
        "quat_act": "linear",
        "fl_act": "relu",
    },
    "depth_head": {
        "dim_in": 2048,
        "features": 256,
        "out_channels": [256, 512, 1024, 1024],
        "intermediate_layer_idx": [4, 11, 17, 23],
        "output_dim": 2,
        "activation": "exp",
        "conf_activation": "expp1",
        "pos_embed": True,
        "down_ratio": 1,
        "head_features_2": 32,
    },
    "point_head": {
        "dim_in": 2048,
        "features": 256,
        "out_channels": [256, 512, 1024, 1024],
        "intermediate_layer_idx": [4, 11, 17, 23],
        "output_dim": 4,
        "activation": "inv_log",
        "conf_activation": "expp1",
        "pos_embed": True,
        "down_ratio": 1,
        "head_features_2": 32,
    },
    "track_head": {
        "dim_in": 2048,
        "features": 128,
        "out_channels": [256, 512, 1024, 1024],
        "intermediate_layer_idx": [4, 11, 17, 23],
        "down_ratio": 2,
        "iters": 4,
        "stride": 2,
        "corr_levels": 7,
        "corr_radius": 4,
        "hidden_size": 384,
        "tracker_depth": 6,
        "tracker_num_heads": 8,
        "num_virtual_tracks": 64,
        "max_scale": 518,
        "predict_conf": True,
    },
}

_DPT_KEYS = (
    "dim_in",
    "features",
    "out_channels",
    "intermediate_layer_idx",
    "output_dim",
    "activation",
    "conf_activation",
    "pos_embed",
    "down_ratio",
    "head_features_2",
)
_TRACK_KEYS = (
    "dim_in",
    "features",
    "out_channels",
    "intermediate_layer_idx",
    "down_ratio",
    "iters",
    "stride",
    "corr_levels",
    "corr_radius",
    "hidden_size",
    "tracker_depth",
    "tracker_num_heads",
    "num_virtual_tracks",
    "max_scale",
    "predict_conf",
)
_CAMERA_KEYS = (
    "dim_in",
    "trunk_depth",
    "num_heads",
    "mlp_ratio",
    "init_values",
    "num_iterations",
    "trans_act",
    "quat_act",
    "fl_act",
)
_AGG_KEYS = (
    "depth",
    "num_heads",
    "mlp_ratio",
    "num_register_tokens",
    "qkv_bias",
    "proj_bias",
    "ffn_bias",
    "qk_norm",
    "rope_freq",
    "init_values",
)


def load_config(source) -> dict:
    """A model config dict from ``"1b"``, ``"tiny"`` (shipped as package data), a JSON path or a dict.

    A JSON file may hold the config itself or wrap it as ``{"tiny": {...}}``.
    """
    if isinstance(source, dict):
        return copy.deepcopy(source)
    if source in ("1b", "1B", None):
        return copy.deepcopy(VGGT_1B_CONFIG)
    if source == "tiny":
        from geovr_plugin_vggt.config import named_config_path

        source = named_config_path("tiny")
    path = Path(source)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        from geovr.errors import CheckpointError

        raise CheckpointError(f"cannot read VGGT model config {str(path)!r}: {exc}") from exc
    if "tiny" in data and "aggregator" not in data:
        data = data["tiny"]
    return data


class VGGT(nn.Module):
    """Visual Geometry Grounded Transformer.

    ``enable_*`` switch heads off at build time (their parameters are then absent).
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        *,
        enable_camera: bool = True,
        enable_point: bool = True,
        enable_depth: bool = True,
        enable_track: bool = True,
        config: dict | None = None,
    ):
        super().__init__()
        cfg = copy.deepcopy(config) if config is not None else copy.deepcopy(VGGT_1B_CONFIG)
        if config is None:
            cfg.update(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim)
            for head in ("camera_head", "depth_head", "point_head", "track_head"):
                cfg[head]["dim_in"] = 2 * embed_dim
        self.config = cfg
        agg = {k: cfg["aggregator"][k] for k in _AGG_KEYS if k in cfg["aggregator"]}
        pe = cfg.get("patch_embed", {})
        patch_embed = {
            "embed_dim": pe.get("embed_dim", 1024),
            "depth": pe.get("depth", 24),
            "num_heads": pe.get("num_heads", 16),
            "mlp_ratio": pe.get("mlp_ratio", 4.0),
            "num_register_tokens": pe.get("num_register_tokens", 4),
            "init_values": pe.get("layerscale_init", 1.0),
            "norm_eps": pe.get("layernorm_eps", 1e-6),
        }
        self.aggregator = Aggregator(
            img_size=cfg["img_size"],
            patch_size=cfg["patch_size"],
            embed_dim=cfg["embed_dim"],
            patch_embed=patch_embed,
            **agg,
        )
        ps = cfg["patch_size"]
        self.camera_head = (
            CameraHead(**{k: cfg["camera_head"][k] for k in _CAMERA_KEYS if k in cfg["camera_head"]})
            if enable_camera
            else None
        )
        self.point_head = (
            DPTHead(patch_size=ps, **{k: cfg["point_head"][k] for k in _DPT_KEYS if k in cfg["point_head"]})
            if enable_point
            else None
        )
        self.depth_head = (
            DPTHead(patch_size=ps, **{k: cfg["depth_head"][k] for k in _DPT_KEYS if k in cfg["depth_head"]})
            if enable_depth
            else None
        )
        self.track_head = (
            TrackHead(patch_size=ps, **{k: cfg["track_head"][k] for k in _TRACK_KEYS if k in cfg["track_head"]})
            if enable_track
            else None
        )

    @classmethod
    def from_config(cls, config, **enable) -> VGGT:
        """Build from a config dict (the layout of ``tiny_config.json["tiny"]``), ``"1b"``, ``"tiny"`` or a
        JSON path; ``enable_camera=False`` etc. drop heads."""
        return cls(config=load_config(config), **enable)

    @property
    def depth(self) -> int:
        """Number of aggregator depth indices (entries of the token list)."""
        return self.aggregator.depth

    def _needed_layers(self, tracking: bool) -> set[int]:
        """Aggregator depth indices the enabled heads read (the others are not kept, to save memory)."""
        need = {self.depth - 1} if self.camera_head is not None else set()
        for head in (self.depth_head, self.point_head):
            if head is not None:
                need |= {i % self.depth for i in head.intermediate_layer_idx}
        if tracking and self.track_head is not None:
            need |= {i % self.depth for i in self.track_head.feature_extractor.intermediate_layer_idx}
        return need

    def set_attention(self, backend: str) -> VGGT:
        """Use ``"sdpa"`` (default), ``"math"`` or ``"xformers"`` attention in every transformer block."""
        set_attention_backend(self, backend)
        return self

    def forward(self, images: Tensor, query_points: Tensor | None = None) -> dict:
        """Run VGGT.

        images: ``[B,S,3,H,W]`` or ``[S,3,H,W]``, RGB in [0,1], H and W multiples of 14.
        query_points: optional ``[B,N,2]`` or ``[N,2]`` pixel ``(x, y)`` in frame 0.

        Returns a dict: ``pose_enc [B,S,9]``, ``pose_enc_list`` (list of ``[B,S,9]``), ``depth [B,S,H,W,1]``,
        ``depth_conf [B,S,H,W]``, ``world_points [B,S,H,W,3]``, ``world_points_conf [B,S,H,W]``; with
        query points ``track [B,S,N,2]``, ``track_list`` (list of ``[B,S,N,2]``), ``vis [B,S,N]``,
        ``conf [B,S,N]``; in eval mode also ``images``. Keys of disabled heads are absent. The camera,
        depth and point heads run with autocast disabled (float32).
        """
        if images.ndim == 4:
            images = images[None]
        if query_points is not None and query_points.ndim == 2:
            query_points = query_points[None]
        tokens, psi = self.aggregator(images, keep_layers=self._needed_layers(query_points is not None))
        out: dict = {}
        with torch.autocast(device_type=images.device.type, enabled=False):
            f32 = [t.float() if t is not None else None for t in tokens]
            if self.camera_head is not None:
                poses = self.camera_head(f32)
                out["pose_enc"], out["pose_enc_list"] = poses[-1], poses
            if self.depth_head is not None:
                out["depth"], out["depth_conf"] = self.depth_head(f32, images.float(), psi)
            if self.point_head is not None:
                out["world_points"], out["world_points_conf"] = self.point_head(f32, images.float(), psi)
        if self.track_head is not None and query_points is not None:
            tracks, vis, conf = self.track_head(tokens, images, psi, query_points)
            out.update(track=tracks[-1], track_list=tracks, vis=vis, conf=conf)
        if not self.training:
            out["images"] = images
        return out
