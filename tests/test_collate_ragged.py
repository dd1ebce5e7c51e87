"""Collation of samples with different frame counts and sizes, frame times, per-sample views, and the
per-sample objective boundary and teacher source on ragged batches."""

from __future__ import annotations

import pytest
import torch

from geovr.data.collate import collate
from geovr.data.oracle import OracleTeacher
from geovr.objectives.configs import CameraPoseConfig
from geovr.objectives.objectives import CameraPoseObjective
from geovr.protocols import StudentOutput, TeacherOutput
from geovr.train.teacher_cache import TeacherSource, merge_metric


def _sample(i, S, H, W):
    g = torch.Generator().manual_seed(i)
    K = torch.tensor([[W * 0.9, 0, W / 2], [0, W * 0.9, H / 2], [0, 0, 1.0]]).expand(S, 3, 3).clone()
    E = torch.zeros(S, 3, 4)
    E[:, :3, :3] = torch.eye(3)
    E[:, 2, 3] = torch.linspace(0, 0.3, S)
    return {
        "frames": torch.rand(S, 3, H, W, generator=g),
        "frame_indices": torch.arange(S) * 7,
        "frame_times": torch.arange(S) * 0.25,
        "question": "q",
        "answer": "a",
        "sample_id": f"s{i}",
        "depth": 1 + torch.rand(S, H, W, generator=g),
        "intrinsics": K,
        "extrinsics": E,
    }


def test_uniform_batch_is_not_ragged_and_keeps_times():
    b = collate([_sample(0, 3, 8, 12), _sample(1, 3, 8, 12)])
    assert not b.ragged and b.frame_counts is None and b.image_sizes is None
    assert b.frame_times.shape == (2, 3) and b.frame_times[0, 2] == 0.5


def test_ragged_batch_pads_and_splits_back_exactly():
    a, c = _sample(0, 2, 8, 12), _sample(1, 4, 12, 8)
    b = collate([a, c])
    assert b.ragged and b.frames.shape == (2, 4, 3, 12, 12) and b.depth.shape == (2, 4, 12, 12)
    assert b.frame_counts.tolist() == [2, 4] and b.image_sizes.tolist() == [[8, 12], [12, 8]]
    assert float(b.frames[0, 2:].abs().sum()) == 0 and float(b.frames[0, :, :, 8:].abs().sum()) == 0
    for s, one in zip((a, c), b.split(), strict=False):
        assert not one.ragged and one.batch_size == 1
        for key in ("frames", "depth", "intrinsics", "extrinsics", "frame_times", "frame_indices"):
            assert torch.equal(getattr(one, key)[0], s[key].to(getattr(one, key).dtype)), key
    assert collate([a, _sample(2, 2, 8, 12)]).ragged is False


def test_collate_rejects_malformed_frames():
    with pytest.raises(ValueError, match=r"sample 0 \(bad\).*\[S,3,H,W\]"):
        collate([{"frames": torch.rand(3, 8, 8), "sample_id": "bad"}])


def test_teacher_source_and_oracle_encode_ragged_batches_per_sample():
    b = collate([_sample(0, 2, 8, 12), _sample(1, 3, 12, 8)])
    oracle = OracleTeacher()
    direct = oracle.encode(b.frames, batch=b)
    via_source = TeacherSource(oracle).encode(b)
    for out in (direct, via_source):
        assert out.ragged and [tuple(d.shape) for d in out.depth] == [(2, 8, 12), (3, 12, 8)]
        alone = oracle.encode(b.sample(1).frames, batch=b.sample(1))
        torch.testing.assert_close(out.sample(1).pose_enc, alone.pose_enc)
    merged = merge_metric(
        TeacherOutput.stack_samples([oracle.encode(x.frames, batch=x) for x in b.split()]),
        TeacherOutput(metric_depth=[torch.ones(2, 4, 6), torch.ones(3, 6, 4)]),
    )
    assert [tuple(m.shape) for m in merged.metric_depth] == [(2, 8, 12), (3, 12, 8)]


def test_objective_boundary_averages_per_sample_losses():
    torch.manual_seed(0)
    obj = CameraPoseObjective(CameraPoseConfig(hidden_dim=8), hidden_size=4)
    cams = [torch.randn(2, 4), torch.randn(3, 4)]
    target = [torch.randn(2, 9), torch.randn(3, 9)]
    b = collate([_sample(0, 2, 8, 12), _sample(1, 3, 12, 8)])
    out = obj(StudentOutput(camera=cams), TeacherOutput(pose_enc=target), b)
    each = [
        obj(StudentOutput(camera=c[None]), TeacherOutput(pose_enc=t[None]), x).loss
        for c, t, x in zip(cams, target, b.split(), strict=False)
    ]
    torch.testing.assert_close(out.loss, torch.stack(each).mean())
