"""Test doubles: small real torch components that exercise the training engine without any model weights.

They implement the :mod:`geovr.protocols` contracts with a few thousand parameters, so engine tests,
the multi-process test and benchmarks run in seconds on a CPU:

* :class:`TinyBackbone`: patch embedding (frozen) → residual MLP layers over visual tokens, camera and
  scale tokens, a character-level answer head giving ``lm_loss``;
* :class:`TinyTeacher`: a frozen random conv "3D model" giving features, depth, depth_conf, pose_enc;
* :class:`TinyMetricTeacher`: metric depth at a different resolution (exercises resizing);
* :class:`TinyFeatureObjective`, :class:`TinyDepthObjective`, :class:`TinyCameraObjective`;
* :class:`TinyVideos`: a deterministic dataset of sample dicts (see :mod:`geovr.data.collate`);
* :func:`fixed_teacher_output`: one fixed, learnable :class:`~geovr.protocols.TeacherOutput` (objective
  training tests without a teacher model).
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from geovr.protocols import (
    GeometryRequest,
    ObjectiveOutput,
    StudentOutput,
    TeacherOutput,
)

VOCAB = 64


def _answer_ids(text: str, length: int) -> list[int]:
    ids = [ord(c) % VOCAB for c in text][:length]
    return ids + [-100] * (length - len(ids))


class TinyBackbone(nn.Module):
    """Backbone protocol on frames ``[B,S,3,H,W]``: ``patch``-pixel patches → tokens ``[B,S,h,w,D]``.

    Dropout makes training consume torch's RNG, so resume tests also cover RNG-state restoration."""

    def __init__(
        self, hidden_size: int = 16, num_layers: int = 2, patch: int = 4, answer_len: int = 4, dropout: float = 0.1
    ):
        super().__init__()
        self.hidden_size, self.num_layers, self.patch, self.answer_len = hidden_size, num_layers, patch, answer_len
        self.embed = nn.Conv2d(3, hidden_size, patch, stride=patch)
        self.embed.requires_grad_(False)  # a frozen "vision tower"
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(hidden_size), nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Dropout(dropout)
            )
            for _ in range(num_layers)
        )
        self.lm_head = nn.Linear(hidden_size, VOCAB * answer_len)
        self.camera_token = nn.Parameter(torch.randn(hidden_size) * 0.02)
        self.scale_token = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def prepare(self, batch, *, with_answers: bool = True) -> dict:
        """``frames`` ``[B,S,3,H,W]`` and ``labels`` ``[B,answer_len]`` (``-100`` = ignored)."""
        labels = torch.tensor([_answer_ids(a if with_answers else "", self.answer_len) for a in batch.answers])
        return {"frames": batch.frames, "labels": labels}

    def forward(self, inputs: dict, *, geometry: GeometryRequest | None = None) -> StudentOutput:
        geometry = geometry if geometry is not None else GeometryRequest()
        frames, labels = inputs["frames"], inputs["labels"].to(inputs["frames"].device)
        B, S = frames.shape[:2]
        x = self.embed(frames.flatten(0, 1))  # [B*S,D,h,w]
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # [B*S,h*w,D]
        states = [x]
        cam = self.camera_token.expand(B * S, 1, -1) if geometry.camera_tokens else None
        for layer in self.layers:
            if cam is not None:
                cam = cam + layer(cam + x.mean(1, keepdim=True))
            x = x + layer(x)
            states.append(x)
        grids = {i: states[i].reshape(B, S, h, w, -1) for i in geometry.layers}
        pooled = x.reshape(B, S * h * w, -1).mean(1)  # [B,D]
        logits = self.lm_head(pooled).reshape(B, self.answer_len, VOCAB)
        lm_loss = (
            F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)
            if bool((labels != -100).any())
            else None
        )
        camera = cam.reshape(B, S, -1) if cam is not None else None
        scale = pooled + self.scale_token if geometry.scale_token else None
        return StudentOutput(lm_loss=lm_loss, logits=logits, hidden=grids, camera=camera, scale=scale)

    def generate(self, batch, **kwargs) -> list[str]:
        with torch.no_grad():
            out = self(self.prepare(batch, with_answers=False))
        return ["".join(chr(48 + int(i) % 43) for i in row) for row in out.logits.argmax(-1)]

    def parameter_groups(self) -> dict[str, list]:
        base = [p for n, p in self.named_parameters() if p.requires_grad and not n.endswith("_token")]
        return {"base": base, "new": [self.camera_token, self.scale_token]}

    def save_pretrained(self, path: str) -> None:
        import os

        from safetensors.torch import save_file

        os.makedirs(path, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in self.state_dict().items() if not k.endswith("_token")},
            os.path.join(path, "model.safetensors"),
        )


class TinyTeacher(nn.Module):
    """A frozen random conv stack: ``features {l: [B,S,h,w,C]}``, ``depth``/``depth_conf`` ``[B,S,H/2,W/2]``,
    ``pose_enc`` ``[B,S,9]``. ``calls`` counts :meth:`encode` invocations (cache tests)."""

    provides = frozenset({"features", "depth", "depth_conf", "pose_enc"})

    def __init__(self, feature_dim: int = 8, num_layers: int = 3, patch: int = 4, seed: int = 1234, delay: float = 0.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.feature_dim, self.num_layers, self.layers, self.delay = feature_dim, num_layers, (num_layers - 1,), delay
        self.stem = nn.Conv2d(3, feature_dim, patch, stride=patch)
        self.blocks = nn.ModuleList(nn.Conv2d(feature_dim, feature_dim, 3, padding=1) for _ in range(num_layers))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.requires_grad_(False)
        self.eval()
        self.calls = 0

    def encode(self, frames, layers=None, *, batch=None) -> TeacherOutput:
        import time

        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        layers = tuple(self.layers if layers is None else layers)
        B, S, _, H, W = frames.shape
        with torch.no_grad():
            x = self.stem(frames.flatten(0, 1))
            feats = {}
            for i, block in enumerate(self.blocks):
                x = x + torch.tanh(block(x))
                if i in layers:
                    feats[i] = x.permute(0, 2, 3, 1).reshape(B, S, x.shape[-2], x.shape[-1], -1)
            small = F.avg_pool2d(frames.flatten(0, 1), 2)  # [B*S,3,H/2,W/2]
            depth = (1.0 + small.mean(1) * 2).reshape(B, S, H // 2, W // 2)
            conf = (1.0 + small.std(1)).reshape(B, S, H // 2, W // 2)
            m = frames.mean((3, 4))  # [B,S,3]
            pose = torch.cat([m, m, m[..., :1], torch.ones(B, S, 2)], -1)  # [B,S,9]
        return TeacherOutput(features=feats, depth=depth, depth_conf=conf, pose_enc=pose)

    def cache_key(self) -> str:
        h = hashlib.sha256(b"tiny-teacher")
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().numpy().tobytes())
        return h.hexdigest()


class TinyMetricTeacher(nn.Module):
    """``metric_depth`` ``[B,S,H,W]`` at full resolution (the trainer resizes it to the teacher's depth)."""

    provides = frozenset({"metric_depth"})
    num_layers, feature_dim, layers = 1, 1, ()

    def encode(self, frames, layers=None, *, batch=None) -> TeacherOutput:
        return TeacherOutput(metric_depth=2.0 + frames.mean(2))

    def cache_key(self) -> str:
        return "tiny-metric-v1"


class _TinyObjective(nn.Module):
    requires: frozenset = frozenset()
    student_needs = GeometryRequest()

    def __init__(self, name: str, weight: float = 1.0):
        super().__init__()
        self.name, self.weight = name, float(weight)


class TinyFeatureObjective(_TinyObjective):
    """Project the student grid of ``layer`` to the teacher features of ``teacher_layer``; MSE."""

    requires = frozenset({"features"})

    def __init__(
        self, hidden_size: int = 16, feature_dim: int = 8, layer: int = 1, teacher_layer: int = 2, weight: float = 1.0
    ):
        super().__init__("feature_distill", weight)
        self.layer, self.teacher_layers = layer, (teacher_layer,)
        self.student_needs = GeometryRequest(layers=(layer,))
        self.head = nn.Linear(hidden_size, feature_dim)

    def forward(self, student, teacher, batch) -> ObjectiveOutput:
        pred = self.head(student.hidden[self.layer])  # [B,S,h,w,C]
        target = teacher.features[self.teacher_layers[0]]
        loss = F.mse_loss(pred, target)
        cos = F.cosine_similarity(pred.detach(), target, dim=-1).mean()
        return ObjectiveOutput(loss=loss, metrics={"cos": float(cos)})


class TinyDepthObjective(_TinyObjective):
    """Per-token depth from the last layer, upsampled to the teacher depth; L1 on log depth."""

    requires = frozenset({"depth"})

    def __init__(self, hidden_size: int = 16, layer: int = 2, weight: float = 1.0, use_metric: bool = False):
        super().__init__("depth", weight)
        self.layer, self.use_metric = layer, use_metric
        self.student_needs = GeometryRequest(layers=(layer,))
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, student, teacher, batch) -> ObjectiveOutput:
        grid = student.hidden[self.layer]
        B, S, h, w, _ = grid.shape
        target = teacher.metric_depth if self.use_metric else teacher.depth
        pred = self.head(grid).reshape(B * S, 1, h, w)
        pred = F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False)
        loss = (pred.reshape_as(target) - target.log()).abs().mean()
        return ObjectiveOutput(
            loss=loss,
            metrics={"abs_rel": float(((pred.detach().reshape_as(target).exp() - target).abs() / target).mean())},
        )


class TinyCameraObjective(_TinyObjective):
    """Camera tokens ``[B,S,D]`` → pose_enc ``[B,S,9]``; L1."""

    requires = frozenset({"pose_enc"})

    def __init__(self, hidden_size: int = 16, weight: float = 1.0):
        super().__init__("camera_pose", weight)
        self.student_needs = GeometryRequest(camera_tokens=True, scale_token=True)
        self.head = nn.Linear(hidden_size, 9)

    def forward(self, student, teacher, batch) -> ObjectiveOutput:
        loss = (self.head(student.camera) - teacher.pose_enc).abs().mean()
        return ObjectiveOutput(loss=loss, metrics={})


class TinyVideos(torch.utils.data.Dataset):
    """``n`` deterministic videos: frames ``[S,3,H,W]`` (smooth random fields), short answers."""

    def __init__(self, n: int = 8, frames: int = 2, size: int = 16, seed: int = 0):
        self.n, self.frames, self.size, self.seed = n, frames, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 100003 + i)
        low = torch.rand(self.frames, 3, 4, 4, generator=g)
        frames = F.interpolate(low, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return {
            "frames": frames.clamp(0, 1),
            "frame_indices": torch.arange(self.frames) * 3 + i % 3,
            "question": f"how many objects in video {i}?",
            "options": None,
            "answer": str(i % 7),
            "question_type": "object_counting",
            "scene_id": f"scene{i:03d}",
            "sample_id": f"tiny-{i:04d}",
        }


def tiny_context(
    *,
    output_dir: str,
    n: int = 8,
    seed: int = 0,
    objectives=("feature", "depth", "camera"),
    teacher=None,
    metric_teacher=None,
):
    """A :class:`geovr.protocols.BuildContext` with tiny backbone, teacher, objectives and data (seeded)."""
    from geovr.protocols import BuildContext

    torch.manual_seed(seed)
    backbone = TinyBackbone()
    made = {
        "feature": lambda: TinyFeatureObjective(),
        "depth": lambda: TinyDepthObjective(),
        "camera": lambda: TinyCameraObjective(),
        "metric_depth": lambda: TinyDepthObjective(use_metric=True),
    }
    objs = [made[k]() for k in objectives]
    for o, k in zip(objs, objectives, strict=False):
        if k == "metric_depth":
            o.name = "metric_depth"
    return BuildContext(
        output_dir=output_dir,
        seed=seed,
        backbone=backbone,
        teacher=teacher if teacher is not None else TinyTeacher(),
        metric_teacher=metric_teacher,
        objectives=objs,
        datasets={"train": TinyVideos(n=n)},
    )


def fixed_teacher_output(
    batch_size: int = 1, num_frames: int = 2, feature_dim: int = 8, layers: tuple[int, ...] = (3, 7, 11, 15)
) -> TeacherOutput:
    """A fixed teacher output to train objectives against (deterministic, seed 7): ``depth``
    ``[B,S,16,16]`` of a tilted plane (frame 1 is 1.5× farther), ``depth_conf`` ``[B,S,16,16]`` in [1, 2),
    ``pose_enc`` ``[B,S,9]`` (frame 0 identity, frame 1 translated and rotated, FoV 0.9 / 1.1),
    random ``features`` ``{layer: [B,S,2,2,C]}`` for ``layers``, and ``metric_depth = 2.7 · depth``."""
    B, S, C = batch_size, num_frames, feature_dim
    g = torch.Generator().manual_seed(7)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    depth = (1.0 + 2.0 * xx + yy).expand(B, S, 16, 16).clone()
    depth[:, 1] *= 1.5
    pose = torch.zeros(B, S, 9)
    pose[..., 6] = 1.0
    pose[:, 1, :3] = torch.tensor([0.3, -0.2, 0.5])
    pose[:, 1, 3:7] = F.normalize(torch.tensor([0.1, 0.2, 0.0, 1.0]), dim=0)
    pose[..., 7:] = torch.tensor([0.9, 1.1])
    return TeacherOutput(
        features={t: torch.randn(B, S, 2, 2, C, generator=g) for t in layers},
        depth=depth,
        depth_conf=torch.rand(B, S, 16, 16, generator=g) + 1.0,
        pose_enc=pose,
        metric_depth=depth * 2.7,
    )
