"""The VGGT teacher on a ragged batch (portrait and landscape samples with different frame counts):
each sample is encoded at its own aspect ratio, exactly as when it is encoded alone."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from geovr.data.collate import collate  # noqa: E402
from geovr_plugin_vggt.config import VGGTTeacherConfig  # noqa: E402
from geovr_plugin_vggt.teacher import VGGTTeacher  # noqa: E402


def test_ragged_batch_is_encoded_per_sample_at_its_own_aspect_ratio():
    teacher = VGGTTeacher(VGGTTeacherConfig(pretrained="", model_config="tiny", image_size=56, layers=[1, 5]))
    g = torch.Generator().manual_seed(0)
    samples = [{"frames": torch.rand(2, 3, 40, 60, generator=g)}, {"frames": torch.rand(3, 3, 60, 40, generator=g)}]
    batch = collate(samples)
    out = teacher.encode(batch.frames, batch=batch)
    assert out.ragged
    # resize mode: long side 56, short side 37.3 → 28 (a multiple of 28), no crop
    assert [tuple(d.shape) for d in out.depth] == [(2, 28, 56), (3, 56, 28)]
    assert [tuple(f.shape[:3]) for f in out.features[5]] == [(2, 1, 2), (3, 2, 1)]
    alone = teacher.encode(samples[1]["frames"][None])
    torch.testing.assert_close(out.depth[1], alone.depth[0])
    torch.testing.assert_close(out.pose_enc[1], alone.pose_enc[0])
