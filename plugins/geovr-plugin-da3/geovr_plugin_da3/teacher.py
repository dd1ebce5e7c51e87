"""The ``da3`` and ``da3_metric`` teachers.

``DA3Teacher.encode(frames [B,S,3,H,W] in [0,1], layers=None)`` → :class:`geovr.protocols.TeacherOutput`
at the working resolution ``H'×W'`` (see :mod:`geovr_plugin_da3.preprocess`):

* ``features {block: [B,S,h,w,C]}``: final-normed patch tokens of the backbone block (C = 1536 for the
  giant model), 2×2 average-pooled with ``pool = 2`` (``h = floor(H'/28)``);
* ``depth``, ``depth_conf`` ``[B,S,H',W']``;
* ``extrinsics [B,S,3,4]``: camera-from-world (OpenCV), expressed in the first camera's frame, so frame 0
  is the identity; ``intrinsics [B,S,3,3]`` in working pixels; ``pose_enc [B,S,9]`` their
  ``[t, q_xyzw, fov_h, fov_w]`` encoding (the convention of every geovr teacher);
* ``points [B,S,H',W',3]``: depth unprojected with those cameras (first camera's frame).

DA3's camera decoder predicts camera-to-world poses whose reference (the first view, given the
reference camera token) is close to, but not exactly, the identity; the teacher inverts them and
re-expresses all cameras relative to frame 0. The released GeoVR code supervises DA3's raw
camera-to-world encoding instead: option ``cameras = "released"`` returns exactly that.

``DA3MetricTeacher.encode(frames)`` → ``TeacherOutput(metric_depth [B,S,H',W'])``: metric depth at the
300-px reference focal length, NaN on sky (sky output ``>= sky_threshold``).
"""

from __future__ import annotations

import hashlib
import json

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geovr import geometry
from geovr.errors import RecipeError
from geovr.protocols import Batch, BuildContext, TeacherOutput
from geovr_plugin_da3.checkpoint import file_digest, load_weights
from geovr_plugin_da3.config import DA3MetricTeacherConfig, DA3TeacherConfig
from geovr_plugin_da3.model import DA3Net
from geovr_plugin_da3.preprocess import preprocess_frames

#: bump when pre-processing or output definitions change (part of cache_key)
TEACHER_VERSION = 1
_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _build_net(config, arch: dict) -> tuple[DA3Net, str | None, str]:
    """(network in eval mode, checkpoint path or None, weights digest)."""
    if config.pretrained == "":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            net = DA3Net(arch)
        return net.eval(), None, f"random-seed-{config.seed}"
    with torch.device("meta"):
        net = DA3Net(arch)
    path = load_weights(net, config.pretrained, assign=True)
    net.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    net.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    return net.eval(), str(path), file_digest(path)


def decode_c2w(pose_enc_c2w: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """DA3 camera-to-world encodings ``[B,S,9]`` → ``(c2w [B,S,3,4], w2c [B,S,4,4], intrinsics [B,S,3,3])``
    as DA3 decodes them (principal point at the centre, ``tan(fov/2)`` clamped at 1e-6)."""
    enc = pose_enc_c2w.float()
    H, W = image_hw
    c2w = torch.cat((geometry.quat_to_mat(enc[..., 3:7]), enc[..., :3, None]), dim=-1)
    intrinsics = torch.zeros(enc.shape[:-1] + (3, 3), device=enc.device)
    intrinsics[..., 0, 0] = (W / 2.0) / torch.tan(enc[..., 8] / 2.0).clamp(min=1e-6)
    intrinsics[..., 1, 1] = (H / 2.0) / torch.tan(enc[..., 7] / 2.0).clamp(min=1e-6)
    intrinsics[..., 0, 2], intrinsics[..., 1, 2], intrinsics[..., 2, 2] = W / 2.0, H / 2.0, 1.0
    return c2w, geometry.closed_form_inverse_se3(c2w), intrinsics


def cameras_from_c2w(pose_enc_c2w: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """DA3 camera-to-world encodings ``[B,S,9]`` → ``(extrinsics [B,S,3,4], intrinsics [B,S,3,3],
    pose_enc [B,S,9])`` with extrinsics camera-from-world relative to frame 0 (frame 0 = identity):
    ``E_i = w2c_i · c2w_0``."""
    c2w, w2c, intrinsics = decode_c2w(pose_enc_c2w, image_hw)
    c2w0 = torch.zeros_like(w2c[:, :1])
    c2w0[..., :3, :] = c2w[:, :1]
    c2w0[..., 3, 3] = 1.0
    rel = (w2c @ c2w0)[..., :3, :]
    rel[:, 0] = torch.eye(3, 4, dtype=rel.dtype, device=rel.device)
    return rel, intrinsics, geometry.extri_intri_to_pose_encoding(rel, intrinsics, image_hw)


def _load_frozen(teacher: nn.Module, config, role: str, device: str) -> None:
    """What both DA3 teachers set up: the checked ``config``, its ``arch``, the network built and loaded
    (``checkpoint_path``, ``weights_digest``) on ``device``, frozen, and ``provides``. ``role`` names the
    recipe table in errors."""
    problems = config.check()
    if problems:
        raise RecipeError([f"{role}: {p}" for p in problems])
    teacher.config = config
    teacher.arch = config.arch()
    net, teacher.checkpoint_path, teacher.weights_digest = _build_net(config, teacher.arch)
    teacher.model = net.to(device)
    teacher.requires_grad_(False)
    teacher.provides = config.provides()


class DA3Teacher(nn.Module):
    """Frozen DA3 any-view teacher (always eval mode, no gradients)."""

    def __init__(self, config: DA3TeacherConfig, *, device: str = "cpu"):
        super().__init__()
        _load_frozen(self, config, "teacher", device)
        self.num_layers = self.model.depth
        self.layers = config.feature_layers()
        self.feature_dim = int(self.arch["backbone"]["embed_dim"])
        self._key: str | None = None

    def train(self, mode: bool = True) -> DA3Teacher:
        """The teacher stays in eval mode whatever ``mode`` is."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, frames: Tensor, layers=None, *, batch: Batch | None = None) -> TeacherOutput:
        """frames ``[B,S,3,H,W]`` in [0,1] → :class:`TeacherOutput` (see the module docstring)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B,S,3,H,W], got {tuple(frames.shape)}")
        layers = tuple(self.layers if layers is None else layers)
        bad = [v for v in layers if not 0 <= v < self.num_layers]
        if bad:
            raise ValueError(f"layers {bad} outside 0..{self.num_layers - 1}")
        images = preprocess_frames(frames.to(self.device), self.config.image_size, self.config.multiple)
        H, W = images.shape[-2:]
        out = self.model(images, export_layers=layers, autocast_dtype=_DTYPES[self.config.dtype])
        if self.config.cameras == "released":  # DA3's own camera-to-world encoding, as the released code uses it
            _, w2c, intrinsics = decode_c2w(out["pose_enc_c2w"], (H, W))
            extrinsics, pose_enc = w2c[..., :3, :].contiguous(), out["pose_enc_c2w"].float()
        else:
            extrinsics, intrinsics, pose_enc = cameras_from_c2w(out["pose_enc_c2w"], (H, W))
        features = {k: self._pool(out["features"][k]) for k in layers}
        points = geometry.unproject_depth(out["depth"], extrinsics, intrinsics)
        return TeacherOutput(
            features=features,
            depth=out["depth"],
            depth_conf=out["depth_conf"],
            pose_enc=pose_enc,
            intrinsics=intrinsics,
            extrinsics=extrinsics,
            points=points,
        )

    def _pool(self, x: Tensor) -> Tensor:
        """``[B,S,h,w,C]`` → 2×2 average-pooled (floor) when ``pool = 2``."""
        if self.config.pool != 2:
            return x.contiguous()
        B, S, h, w, C = x.shape
        y = F.avg_pool2d(x.reshape(B * S, h, w, C).permute(0, 3, 1, 2), 2, 2)
        return y.permute(0, 2, 3, 1).reshape(B, S, y.shape[-2], y.shape[-1], C).contiguous()

    def cache_key(self) -> str:
        """sha256 over weights digest, model configuration, pre-processing and output options."""
        if self._key is None:
            c = self.config
            blob = json.dumps(
                {
                    "teacher": "da3",
                    "version": TEACHER_VERSION,
                    "weights": self.weights_digest,
                    "arch": self.arch,
                    "image_size": c.image_size,
                    "multiple": c.multiple,
                    "layers": list(self.layers),
                    "pool": c.pool,
                    "dtype": c.dtype,
                    "cameras": c.cameras,
                },
                sort_keys=True,
                default=str,
            ).encode()
            self._key = hashlib.sha256(blob).hexdigest()
        return self._key


class DA3MetricTeacher(nn.Module):
    """Frozen DA3METRIC teacher providing ``metric_depth`` (NaN on sky)."""

    def __init__(self, config: DA3MetricTeacherConfig, *, device: str = "cpu"):
        super().__init__()
        _load_frozen(self, config, "metric_teacher", device)
        self._key: str | None = None

    def train(self, mode: bool = True) -> DA3MetricTeacher:
        return super().train(False)

    @torch.no_grad()
    def encode(self, frames: Tensor, layers=None, *, batch: Batch | None = None) -> TeacherOutput:
        """frames ``[B,S,3,H,W]`` in [0,1] → ``TeacherOutput(metric_depth [B,S,H',W'])``."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B,S,3,H,W], got {tuple(frames.shape)}")
        device = next(self.model.parameters()).device
        images = preprocess_frames(frames.to(device), self.config.image_size, self.config.multiple)
        out = self.model(images, autocast_dtype=_DTYPES[self.config.dtype])
        depth = out["depth"].masked_fill(out["sky"] >= self.config.sky_threshold, float("nan"))
        return TeacherOutput(metric_depth=depth)

    def cache_key(self) -> str:
        if self._key is None:
            c = self.config
            blob = json.dumps(
                {
                    "teacher": "da3_metric",
                    "version": TEACHER_VERSION,
                    "weights": self.weights_digest,
                    "arch": self.arch,
                    "image_size": c.image_size,
                    "multiple": c.multiple,
                    "sky_threshold": c.sky_threshold,
                    "dtype": c.dtype,
                },
                sort_keys=True,
            ).encode()
            self._key = hashlib.sha256(blob).hexdigest()
        return self._key


def build(config: DA3TeacherConfig, context: BuildContext) -> DA3Teacher:
    """Factory of teacher ``da3`` on ``context.device``."""
    return DA3Teacher(config, device=getattr(context, "device", "cpu") or "cpu")


def build_metric(config: DA3MetricTeacherConfig, context: BuildContext) -> DA3MetricTeacher:
    """Factory of metric teacher ``da3_metric`` on ``context.device``."""
    return DA3MetricTeacher(config, device=getattr(context, "device", "cpu") or "cpu")
