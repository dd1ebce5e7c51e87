"""``DA3Net``: backbone + dense head (+ camera decoder), module tree as in the official checkpoints
(``backbone.pretrained.*``, ``head.*``, ``cam_dec.*``, ``cam_enc.*``).

``forward(images [B,S,3,H,W] in [0,1], export_layers=())`` normalises with the ImageNet mean/std (as the
released GeoVR wrapper does) and returns a dict:

* any-view model: ``depth [B,S,H,W]``, ``depth_conf [B,S,H,W]``, ``pose_enc_c2w [B,S,9]`` (the camera
  decoder's camera-to-world encoding) and ``features {block: [B,S,h,w,C]}`` (final-normed tokens of the
  ``export_layers`` blocks);
* metric model: ``depth [B,S,H,W]`` (metric at a 300-px reference focal length) and ``sky [B,S,H,W]``
  (≥ 0.3 = sky in the official post-processing).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geovr_plugin_da3.model.backbone import DinoWrapper
from geovr_plugin_da3.model.heads import DPT, CameraDec, CameraEnc, DualDPT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DA3Net(nn.Module):
    """A Depth Anything 3 network built from a configuration dict (see ``configs/*.json``)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        b, h = cfg["backbone"], cfg["head"]
        self.backbone = DinoWrapper(b)
        embed = int(b["embed_dim"])
        dim_in = 2 * embed if b.get("cat_token", False) else embed
        kw = {
            "features": int(h.get("features", 256)),
            "out_channels": tuple(h.get("out_channels", (256, 512, 1024, 1024))),
            "output_dim": int(h.get("output_dim", 2 if h["type"] == "dualdpt" else 1)),
            "patch_size": int(b.get("patch_size", 14)),
        }
        self.head = DualDPT(dim_in, **kw) if h["type"] == "dualdpt" else DPT(dim_in, **kw)
        self.kind = h["type"]
        self.cam_dec = self.cam_enc = None
        if cfg.get("cam_dec"):
            self.cam_dec = CameraDec(dim_in)
            enc = cfg.get("cam_enc") or {}
            self.cam_enc = CameraEnc(
                int(enc.get("dim_out", embed)),
                trunk_depth=int(enc.get("trunk_depth", 4)),
                num_heads=int(enc.get("num_heads", 16)),
            )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1), persistent=False)

    @property
    def depth(self) -> int:
        """Number of backbone blocks."""
        return self.backbone.pretrained.depth

    @property
    def patch_size(self) -> int:
        return self.backbone.pretrained.patch_size

    def forward(self, images: Tensor, export_layers=(), *, autocast_dtype: torch.dtype | None = None) -> dict:
        B, S, _, H, W = images.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image sides must be multiples of the patch size {p}, got {H}x{W}")
        x = (images.float() - self.mean) / self.std
        with torch.autocast(
            device_type=x.device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None
        ):
            outs, exported = self.backbone(x, export_layers)
        tokens = [t.float().reshape(B * S, t.shape[2], t.shape[3]) for t, _ in outs]
        result: dict = {}
        if self.kind == "dualdpt":
            depth, conf = self.head(tokens, H, W)
            result["depth"], result["depth_conf"] = depth.reshape(B, S, H, W), conf.reshape(B, S, H, W)
        else:
            depth, sky = self.head(tokens, H, W)
            result["depth"], result["sky"] = depth.reshape(B, S, H, W), sky.reshape(B, S, H, W)
        if self.cam_dec is not None:
            result["pose_enc_c2w"] = self.cam_dec(outs[-1][1].float())
        h, w = H // p, W // p
        result["features"] = {k: v.float().reshape(B, S, h, w, v.shape[-1]) for k, v in exported.items()}
        return result
