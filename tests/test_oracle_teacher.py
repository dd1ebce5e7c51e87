"""The oracle teacher: VGGT-convention normalisation, pose_enc round trip to the scene cameras,
metric scale, features, contract check, clear error without ground truth."""

import pytest
import torch

from geovr import get_registry
from geovr.data.collate import collate
from geovr.data.configs import OracleTeacherConfig
from geovr.data.oracle import OracleTeacher
from geovr.errors import DataError, RecipeError
from geovr.geometry import pose_encoding_to_extri_intri, unproject_depth
from geovr.testing.contracts import check_teacher


@pytest.fixture(scope="module")
def batch():
    ds = (
        get_registry()
        .get("dataset", "synthetic_rooms")
        .build({"num_samples": 2, "num_frames": 3, "image_size": [28, 42], "seed": 3, "num_objects": [6, 10]})
    )
    return collate([ds[0], ds[1]])


def test_pose_enc_round_trips_to_scene_cameras(batch):
    teacher = get_registry().get("teacher", "oracle").build({})
    out = teacher.encode(batch.frames, batch=batch)
    H, W = batch.frames.shape[-2:]
    ext, K = pose_encoding_to_extri_intri(out.pose_enc.double(), (H, W))
    torch.testing.assert_close(K, batch.intrinsics.double(), atol=1e-4, rtol=1e-5)
    # undo the normalisation: scale translations back, then re-attach the first camera
    ext = ext.clone()
    ext[..., 3] *= out.metric_scale.double()[:, None, None]
    first = batch.extrinsics[:, :1].double()
    E4 = torch.eye(4, dtype=torch.float64).expand(*ext.shape[:2], 4, 4).clone()
    E4[..., :3, :] = ext
    restored = (
        E4 @ torch.cat([first, torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(first.shape[0], 1, 1, 4)], -2)
    )[..., :3, :]
    torch.testing.assert_close(restored, batch.extrinsics.double(), atol=2e-5, rtol=0)
    # first camera is the identity; pose_enc starts [0,0,0, 0,0,0,1]
    torch.testing.assert_close(
        out.pose_enc[:, 0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]).expand(2, 7), atol=1e-6, rtol=0
    )


def test_normalised_geometry_and_metric_scale(batch):
    out = OracleTeacher().encode(batch.frames, batch=batch)
    torch.testing.assert_close(out.metric_depth, batch.depth)
    torch.testing.assert_close(out.depth * out.metric_scale[:, None, None, None], batch.depth, rtol=1e-5, atol=1e-5)
    mean_dist = out.points.norm(dim=-1).flatten(1).mean(1)
    torch.testing.assert_close(mean_dist, torch.ones(2), atol=1e-3, rtol=0)  # VGGT normalisation
    pts = unproject_depth(out.depth, out.extrinsics, out.intrinsics)
    torch.testing.assert_close(pts, out.points, atol=1e-4, rtol=1e-4)
    assert torch.equal(out.depth_conf, torch.ones_like(out.depth))


def test_features_and_contract(batch):
    teacher = OracleTeacher(OracleTeacherConfig(feature_dim=16, num_layers=8, layers=[1, 6], patch_size=7))
    out = check_teacher(teacher, batch.frames, batch=batch)
    assert set(out.features) == {1, 6}
    f1, f6 = out.features[1], out.features[6]
    assert f1.shape == (2, 3, 4, 6, 16)
    torch.testing.assert_close(f1[..., :8] ** 2 + f1[..., 8:] ** 2, torch.ones(2, 3, 4, 6, 8))
    # deeper layers use higher frequencies: neighbouring patches differ more
    assert (f6[:, :, :, 1:] - f6[:, :, :, :-1]).abs().mean() > (f1[:, :, :, 1:] - f1[:, :, :, :-1]).abs().mean()
    assert teacher.cache_key() != OracleTeacher().cache_key()


def test_errors_without_ground_truth_and_bad_config(batch):
    teacher = OracleTeacher()
    with pytest.raises(DataError, match="ground-truth depth"):
        teacher.encode(batch.frames)
    no_gt = collate([{"frames": torch.zeros(3, 3, 28, 42), "question": "q", "answer": "a"}])
    with pytest.raises(DataError, match="synthetic_rooms"):
        teacher.encode(no_gt.frames, batch=no_gt)
    with pytest.raises(RecipeError, match="layers"):
        get_registry().get("teacher", "oracle").parse_config({"layers": [30]})
    assert OracleTeacherConfig().provides() == frozenset(
        {"features", "depth", "depth_conf", "pose_enc", "intrinsics", "extrinsics", "points", "metric_depth"}
    )


def test_feature_scale_multiplies_the_frequencies(batch):
    base = OracleTeacher(OracleTeacherConfig(feature_dim=16, num_layers=8, layers=[2, 6], patch_size=7))
    half = OracleTeacher(
        OracleTeacherConfig(feature_dim=16, num_layers=8, layers=[2, 6], patch_size=7, feature_scale=0.5)
    )
    fb = base.encode(batch.frames, batch=batch).features
    fh = half.encode(batch.frames, batch=batch).features
    # scale 2^(4·l/8 − 1): halving it moves layer 6 onto layer 4's spectrum (exactly), and changes layer 2
    torch.testing.assert_close(fh[6], base.encode(batch.frames, [4], batch=batch).features[4])
    assert not torch.allclose(fh[2], fb[2])
    assert half.cache_key() != base.cache_key()
    assert (
        base.cache_key()
        == OracleTeacher(
            OracleTeacherConfig(feature_dim=16, num_layers=8, layers=[2, 6], patch_size=7, feature_scale=1.0)
        ).cache_key()
    )
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(RecipeError, match="feature_scale"):
            get_registry().get("teacher", "oracle").parse_config({"feature_scale": bad})
