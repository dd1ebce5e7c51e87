"""The ``da3`` and ``da3_metric`` teachers: registration, options, the Teacher contract, geovr's camera
conventions (camera-from-world, first frame identity) checked against the official outputs, sky as NaN."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch

from geovr import geometry
from geovr.errors import RecipeError
from geovr.protocols import BuildContext, Teacher
from geovr.testing.contracts import check_teacher
from geovr_plugin_da3.config import RELEASED_FEATURE_LAYERS, DA3MetricTeacherConfig, DA3TeacherConfig
from geovr_plugin_da3.preprocess import preprocess_frames, target_size
from geovr_plugin_da3.teacher import DA3MetricTeacher, DA3Teacher, build, build_metric, decode_c2w

GOLDEN = Path(__file__).resolve().parent / "golden"
TOL = dict(atol=1e-5, rtol=1e-4)


def tiny_cfg(**kw) -> DA3TeacherConfig:
    opts = dict(
        pretrained=str(GOLDEN / "da3_tiny_weights.safetensors"),
        model_config="tiny",
        image_size=56,
        multiple=14,
        layers=[2, 4, 5, 7],
        pool=1,
    )
    return DA3TeacherConfig(**{**opts, **kw})


@pytest.fixture(scope="module")
def teacher():
    return build(tiny_cfg(), BuildContext())


def test_registered_through_the_plugin_hook(da3_registered):
    spec = da3_registered.registry.get("teacher", "da3")
    assert spec.config is DA3TeacherConfig and spec.factory == "geovr_plugin_da3.teacher:build"
    metric = da3_registered.registry.get("teacher", "da3_metric")
    assert metric.config is DA3MetricTeacherConfig
    with pytest.raises(RecipeError, match=r"layers \[8\] outside the 8 blocks"):
        spec.parse_config({"pretrained": "", "model_config": "tiny", "layers": [8], "image_size": 56, "multiple": 14})
    with pytest.raises(RecipeError, match="unknown option 'imagesize'"):
        spec.parse_config({"imagesize": 504})


def test_defaults_follow_the_released_dispatch():
    cfg = DA3TeacherConfig()
    assert (cfg.pretrained, cfg.model_config, cfg.image_size, cfg.multiple, cfg.pool) == (
        "depth-anything/DA3-GIANT-1.1",
        "giant",
        504,
        28,
        2,
    )
    assert cfg.check() == [] and cfg.feature_layers() == RELEASED_FEATURE_LAYERS == (18, 26, 32, 38)
    m = DA3MetricTeacherConfig()
    assert (m.pretrained, m.model_config, m.sky_threshold) == ("depth-anything/DA3METRIC-LARGE", "metric_large", 0.3)
    assert m.check() == []
    assert any("metric model" in p for p in DA3TeacherConfig(model_config="metric_large").check())
    assert any("not a metric model" in p for p in DA3MetricTeacherConfig(model_config="giant").check())
    assert any("multiple of multiple=28" in p for p in DA3TeacherConfig(image_size=500).check())
    assert any("readable JSON" in p for p in DA3TeacherConfig(model_config="/no/such.json").check())
    assert DA3TeacherConfig(model_config="tiny").feature_layers() == (0, 2, 4, 6)


def test_contract_and_official_numbers(teacher, io):
    assert isinstance(teacher, Teacher)
    assert teacher.num_layers == 8 and teacher.feature_dim == 32 and teacher.layers == (2, 4, 5, 7)
    images = io["a.images"]  # [1,3,3,42,56]: already at the working size
    out = check_teacher(teacher, images)
    torch.testing.assert_close(out.depth, io["a.depth"], **TOL)
    torch.testing.assert_close(out.depth_conf, io["a.depth_conf"], **TOL)
    for k in teacher.layers:
        torch.testing.assert_close(out.features[k], io[f"a.feat_layer_{k}"], **TOL)
    torch.testing.assert_close(out.intrinsics, io["a.intrinsics"], **TOL)


@pytest.mark.parametrize("case", ["a", "b"])
def test_cameras_are_camera_from_world_with_the_first_frame_identity(teacher, io, case):
    """extrinsics map a point given in camera 0's frame into camera i exactly as the official cameras do
    (official world → camera i after official camera 0 → world); pose_enc encodes them."""
    images = io[f"{case}.images"]
    out = teacher.encode(images)
    B, S = images.shape[:2]
    eye = torch.eye(3, 4).expand(B, 3, 4)
    torch.testing.assert_close(out.extrinsics[:, 0], eye)
    torch.testing.assert_close(out.pose_enc[:, 0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]).expand(B, 7))
    w2c = torch.cat((io[f"{case}.extrinsics_w2c"], torch.tensor([0, 0, 0, 1.0]).expand(B, S, 1, 4)), dim=-2)
    c2w0 = torch.linalg.inv(w2c[:, 0])
    p0 = torch.randn(B, 5, 3, generator=torch.Generator().manual_seed(0))
    p0h = torch.cat((p0, torch.ones(B, 5, 1)), dim=-1)
    for i in range(S):
        expected = (w2c[:, i] @ c2w0 @ p0h.transpose(1, 2))[:, :3].transpose(1, 2)
        got = (out.extrinsics[:, i, :, :3] @ p0.transpose(1, 2) + out.extrinsics[:, i, :, 3:]).transpose(1, 2)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    H, W = images.shape[-2:]
    ext, intr = geometry.pose_encoding_to_extri_intri(out.pose_enc, (H, W))
    torch.testing.assert_close(ext, out.extrinsics, atol=1e-4, rtol=1e-4)
    # the raw DA3 cameras are camera-to-world: their inverse is what the official code reports as extrinsics
    _, raw_w2c, _ = decode_c2w(io[f"{case}.pose_enc_c2w"], (H, W))
    torch.testing.assert_close(raw_w2c[..., :3, :], io[f"{case}.extrinsics_w2c"], **TOL)


def test_points_lie_on_the_depth_rays(teacher, io):
    """points are depth unprojected with the returned cameras: mapped back into camera i their z is depth."""
    out = teacher.encode(io["b.images"])
    E = out.extrinsics[:, 1]  # camera 1 of each video
    pts = out.points[:, 1]  # [B,H,W,3] in camera 0's frame
    cam = torch.einsum("bij,bhwj->bhwi", E[..., :3], pts) + E[:, None, None, :, 3]
    torch.testing.assert_close(cam[..., 2], out.depth[:, 1], atol=1e-3, rtol=1e-3)


def test_features_pool_and_default_layers():
    t = build(tiny_cfg(layers=None, pool=2), BuildContext())
    assert t.layers == (0, 2, 4, 6)
    out = t.encode(torch.rand(1, 2, 3, 42, 70))  # grid 3×5 → pooled 1×2 (floor)
    assert {k: tuple(v.shape) for k, v in out.features.items()} == {k: (1, 2, 1, 2, 32) for k in t.layers}
    with pytest.raises(ValueError, match=r"layers \[9\] outside 0..7"):
        t.encode(torch.rand(1, 2, 3, 42, 56), layers=[9])


def test_preprocessing_long_side_and_multiple():
    assert target_size(480, 640, 504, 28) == (392, 504)
    assert target_size(640, 480, 504, 28) == (504, 392)
    assert target_size(100, 1000, 504, 28) == (56, 504)  # at least 2 cells of 28
    x = torch.rand(1, 2, 3, 480, 640)
    y = preprocess_frames(x, 504, 28)
    assert y.shape == (1, 2, 3, 392, 504) and 0 <= float(y.min()) and float(y.max()) <= 1
    same = torch.rand(1, 1, 3, 42, 56)
    assert torch.equal(preprocess_frames(same, 56, 14), same)


def test_frozen_cache_key_and_seeded_random_weights(teacher):
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training
    a = DA3Teacher(DA3TeacherConfig(pretrained="", model_config="tiny", image_size=56, multiple=14, seed=3))
    b = DA3Teacher(DA3TeacherConfig(pretrained="", model_config="tiny", image_size=56, multiple=14, seed=3))
    c = DA3Teacher(DA3TeacherConfig(pretrained="", model_config="tiny", image_size=56, multiple=14, seed=4))
    assert a.cache_key() == b.cache_key() != c.cache_key() != teacher.cache_key()
    assert torch.equal(a.model.head.projects[0].weight, b.model.head.projects[0].weight)
    assert DA3Teacher(tiny_cfg(pool=2)).cache_key() != teacher.cache_key()


def test_invalid_options_raise_at_build():
    with pytest.raises(RecipeError, match="teacher: image_size"):
        DA3Teacher(tiny_cfg(image_size=50))


def test_metric_teacher_sky_is_nan_and_depth_is_the_official(metric_io):
    cfg = DA3MetricTeacherConfig(
        pretrained=str(GOLDEN / "metric_tiny_weights.safetensors"),
        model_config="tiny_metric",
        image_size=56,
        multiple=14,
    )
    t = build_metric(cfg, BuildContext())
    assert isinstance(t, DA3MetricTeacher) and t.provides == frozenset({"metric_depth"})
    out = t.encode(metric_io["a.images"])
    sky = metric_io["a.sky"] >= 0.3
    assert torch.equal(out.metric_depth.isnan(), sky)
    torch.testing.assert_close(out.metric_depth[~sky], metric_io["a.depth_raw"][~sky], **TOL)
    looser = build_metric(attrs.evolve(cfg, sky_threshold=1.0), BuildContext())
    assert int(looser.encode(metric_io["a.images"]).metric_depth.isnan().sum()) < int(sky.sum())
    assert looser.cache_key() != t.cache_key()


def test_bfloat16_backbone_is_close_to_float32(teacher, io):
    """``dtype = "bfloat16"`` runs the backbone under autocast (heads in float32): close, not equal."""
    bf = build(tiny_cfg(dtype="bfloat16"), BuildContext())
    a, b = teacher.encode(io["a.images"]), bf.encode(io["a.images"])
    assert b.depth.dtype == torch.float32 and not torch.equal(a.depth, b.depth)
    rel = ((a.depth - b.depth).abs() / a.depth.abs()).median()
    assert float(rel) < 0.05, float(rel)


def test_released_camera_convention_returns_da3s_own_encoding(io):
    """``cameras = "released"``: pose_enc is DA3's camera-to-world encoding and extrinsics its inverse, as the
    released code supervises them (frame 0 then is not the identity)."""
    t = build(tiny_cfg(cameras="released"), BuildContext())
    out = check_teacher(t, io["a.images"])
    torch.testing.assert_close(out.pose_enc, io["a.pose_enc_c2w"], **TOL)
    torch.testing.assert_close(out.extrinsics, io["a.extrinsics_w2c"], **TOL)
    assert not torch.allclose(out.extrinsics[:, 0], torch.eye(3, 4).expand(1, 3, 4), atol=1e-3)
    assert t.cache_key() != build(tiny_cfg(), BuildContext()).cache_key()
