"""The teacher contract as docs/writing-plugins.md states it: a plain object (not an nn.Module) that
provides depth only (num_layers 0, feature_dim 0, layers ()) passes check_teacher, feeds the depth
objective through the trainer's teacher source, and is refused by feature_distill with a clear error."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from geovr.errors import RecipeError  # noqa: E402
from geovr.objectives.configs import DepthConfig, FeatureDistillConfig  # noqa: E402
from geovr.objectives.objectives import build_depth, build_feature_distill  # noqa: E402
from geovr.protocols import Batch, TeacherOutput  # noqa: E402
from geovr.testing.contracts import check_teacher  # noqa: E402
from geovr.testing.tiny import TinyBackbone  # noqa: E402
from geovr.train.teacher_cache import TeacherSource, teacher_layers  # noqa: E402


class DepthOnly:
    """Inverse-brightness "depth": a deterministic stand-in for a monocular depth model."""

    provides = frozenset({"depth"})
    num_layers = 0
    feature_dim = 0
    layers: tuple[int, ...] = ()

    def encode(self, frames, layers=None, *, batch=None):
        return TeacherOutput(depth=1.0 / (frames.mean(dim=2) + 0.5))  # [B,S,H,W]

    def cache_key(self):
        return hashlib.sha256(b"depth-only v1").hexdigest()


def test_plain_depth_only_teacher_meets_the_contract():
    frames = torch.rand(2, 3, 3, 16, 16)
    out = check_teacher(DepthOnly(), frames)
    assert out.depth.shape == (2, 3, 16, 16) and out.features == {}
    assert teacher_layers(DepthOnly()) is None  # no feature layers are requested from it
    source = TeacherSource(DepthOnly(), layers=None)
    got = source.encode(Batch(frames=frames, sample_ids=["a", "b"], questions=["", ""], answers=["", ""]))
    torch.testing.assert_close(got.depth, out.depth)


def test_depth_objective_reads_four_spaced_student_layers_and_distill_refuses():
    ctx = SimpleNamespace(backbone=TinyBackbone(hidden_size=16, num_layers=8), teacher=DepthOnly(), device="cpu")
    depth = build_depth(DepthConfig(width_scale=1 / 32), ctx)
    assert depth.student_needs.layers == (2, 4, 6, 8)
    with pytest.raises(RecipeError, match="feature_dim > 0"):
        build_feature_distill(FeatureDistillConfig(), ctx)
