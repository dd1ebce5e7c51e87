"""The ``vggt`` teacher component: registration, options, the Teacher contract and its numbers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from geovr import geometry  # noqa: E402
from geovr.errors import RecipeError  # noqa: E402
from geovr.protocols import BuildContext, Teacher, TeacherOutput  # noqa: E402
from geovr.testing import registered  # noqa: E402
from geovr.testing.contracts import check_teacher  # noqa: E402
from geovr_plugin_vggt import plugin  # noqa: E402
from geovr_plugin_vggt.config import VGGT_PROVIDES, VGGTTeacherConfig  # noqa: E402
from geovr_plugin_vggt.preprocess import preprocess_frames  # noqa: E402
from geovr_plugin_vggt.teacher import VGGTTeacher, build  # noqa: E402

TOL = dict(atol=1e-5, rtol=1e-5)


def tiny_cfg(root, **kw) -> VGGTTeacherConfig:
    opts = dict(
        pretrained=str(root / "tiny_weights.safetensors"),
        model_config="tiny",
        image_size=56,
        layers=[1, 2, 4, 5],
        pool=1,
        size_multiple=14,
    )  # golden frames (42x56, 56x56) pass unchanged
    opts.update(kw)
    return VGGTTeacherConfig(**opts)


@pytest.fixture(scope="module")
def teacher(root):
    return build(tiny_cfg(root), BuildContext())


def test_registered_through_the_plugin_hook(root):
    with registered(plugin, "vggt-under-test", distribution="geovr-plugin-vggt", isolated=True) as host:
        spec = host.registry.get("teacher", "vggt")
        assert spec.config is VGGTTeacherConfig
        assert spec.factory == "geovr_plugin_vggt.teacher:build"
        table = {
            "pretrained": str(root / "tiny_weights.safetensors"),
            "model_config": "tiny",
            "image_size": 56,
            "layers": [5],
        }
        t = spec.build(table, BuildContext())
        assert isinstance(t, VGGTTeacher) and t.layers == (5,)
        with pytest.raises(RecipeError, match=r"layers \[6\] out of range.*depth 6"):
            spec.parse_config({**table, "layers": [6]})
        with pytest.raises(RecipeError, match="unknown option 'imagesize'"):
            spec.parse_config({"imagesize": 518})


def test_config_defaults_and_checks():
    cfg = VGGTTeacherConfig()
    assert (cfg.pretrained, cfg.model_config, cfg.image_size, cfg.layers) == (
        "facebook/VGGT-1B",
        "1b",
        504,
        [4, 11, 17, 23],
    )
    assert (cfg.feature_half, cfg.pool, cfg.resize_mode, cfg.attention) == ("frame", 2, "resize", "sdpa")
    assert cfg.size_multiple == 28 and any("size_multiple" in p for p in VGGTTeacherConfig(size_multiple=20).check())
    assert (
        cfg.provides()
        == VGGT_PROVIDES
        == frozenset({"features", "depth", "depth_conf", "pose_enc", "intrinsics", "extrinsics", "points"})
    )
    assert cfg.check() == [] and cfg.depth() == 24
    assert any("out of range" in p for p in VGGTTeacherConfig(layers=[4, 24]).check())
    assert any("multiple of 14" in p for p in VGGTTeacherConfig(image_size=500).check())
    assert any("readable JSON" in p for p in VGGTTeacherConfig(model_config="/no/such.json").check())
    assert VGGTTeacherConfig(model_config="tiny", layers=[1, 2, 4, 5]).check() == []


def test_contract_and_golden_numbers(teacher, io):
    assert isinstance(teacher, Teacher)
    assert teacher.num_layers == 6 and teacher.feature_dim == 32 and teacher.layers == (1, 2, 4, 5)
    images = io["case_a.images"]  # [1,3,3,42,56]: already at the working size for image_size=56
    out = check_teacher(teacher, images)
    assert isinstance(out, TeacherOutput)
    torch.testing.assert_close(out.depth, io["case_a.depth"][..., 0], **TOL)
    torch.testing.assert_close(out.depth_conf, io["case_a.depth_conf"], **TOL)
    torch.testing.assert_close(out.pose_enc, io["case_a.pose_enc"], **TOL)
    torch.testing.assert_close(out.extrinsics, io["case_a.extrinsic"], **TOL)
    torch.testing.assert_close(out.intrinsics, io["case_a.intrinsic"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.points, io["case_a.points_from_depth_b0"][None], atol=1e-5, rtol=1e-5)
    for layer in (1, 2, 4, 5):  # frame half, special tokens dropped, [B,S,h,w,C]
        ref = io[f"case_a.agg_tokens.{layer}"][:, :, 5:, :32].reshape(1, 3, 3, 4, 32)
        torch.testing.assert_close(out.features[layer], ref, atol=0, rtol=0)


def test_feature_options(root, io):
    images = io["case_b.images"]  # [2,2,3,56,56]: grid 4x4
    ref = io["case_b.agg_tokens.4"][:, :, 5:].reshape(2, 2, 4, 4, 64)
    glob = VGGTTeacher(tiny_cfg(root, feature_half="global", layers=[4]))
    assert glob.feature_dim == 32
    torch.testing.assert_close(glob.encode(images).features[4], ref[..., 32:], atol=0, rtol=0)
    both = VGGTTeacher(tiny_cfg(root, feature_half="both", pool=2, layers=[4]))
    assert both.feature_dim == 64
    pooled = both.encode(images).features[4]
    assert pooled.shape == (2, 2, 2, 2, 64)
    torch.testing.assert_close(pooled[0, 1, 1, 0], ref[0, 1, 2:4, 0:2].mean(dim=(0, 1)), **TOL)
    out = both.encode(images, layers=[1, 5])
    assert set(out.features) == {1, 5}
    with pytest.raises(ValueError, match="outside 0..5"):
        both.encode(images, layers=[6])


def test_odd_grid_pooling_drops_the_last_row_as_released(root, io):
    """2×2 average pooling as the released distillation target (``F.avg_pool2d(x, 2, 2)``): an odd grid
    loses its last row / column."""
    t = VGGTTeacher(tiny_cfg(root, pool=2, layers=[5]))
    out = t.encode(io["case_a.images"])  # 42x56: grid 3x4 -> pooled floor(3/2) x 2
    assert out.features[5].shape == (1, 3, 1, 2, 32)
    ref = io["case_a.agg_tokens.5"][:, :, 5:, :32].reshape(1, 3, 3, 4, 32)
    torch.testing.assert_close(out.features[5][:, :, 0, 1], ref[:, :, 0:2, 2:4].mean(dim=(2, 3)), **TOL)
    torch.testing.assert_close(out.features[5][:, :, 0, 0], ref[:, :, 0:2, 0:2].mean(dim=(2, 3)), **TOL)


def test_points_from_point_head(root, io):
    t = VGGTTeacher(tiny_cfg(root, points="head", layers=[5]))
    out = t.encode(io["case_a.images"])
    torch.testing.assert_close(out.points, io["case_a.world_points"], **TOL)


def test_preprocessing_crop_and_pad():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(1, 2, 3, 60, 80, generator=g)
    crop = preprocess_frames(frames, 56, "crop")
    assert crop.shape == (1, 2, 3, 42, 56)  # width 56, height round(60*56/80/14)*14 = 42
    ref = F.interpolate(frames[0], size=(42, 56), mode="bicubic", antialias=True).clamp(0, 1)
    torch.testing.assert_close(crop[0], ref)
    tall = preprocess_frames(torch.rand(1, 1, 3, 100, 40, generator=g), 56, "crop")
    assert tall.shape == (1, 1, 3, 56, 56)  # 140 high after resize, centre-cropped to 56
    pad = preprocess_frames(frames, 56, "pad")
    assert pad.shape == (1, 2, 3, 56, 56)
    assert bool((pad[..., :7, :] == 1).all()) and bool((pad[..., 49:, :] == 1).all())  # 7 white rows each side
    torch.testing.assert_close(pad[..., 7:49, :], crop)
    same = torch.rand(1, 1, 3, 42, 56, generator=g)
    assert torch.equal(preprocess_frames(same, 56, "crop"), same)


def test_encode_resizes_to_working_resolution(teacher):
    out = teacher.encode(torch.rand(1, 2, 3, 30, 40))  # -> 42x56 (crop)
    assert out.depth.shape == (1, 2, 42, 56) and out.features[1].shape == (1, 2, 3, 4, 32)
    ext, intr = geometry.pose_encoding_to_extri_intri(out.pose_enc, (42, 56))
    torch.testing.assert_close(out.intrinsics, intr, atol=0, rtol=0)


def test_frozen_and_no_grad(teacher, io):
    teacher.train()
    assert not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.enable_grad():
        out = teacher.encode(io["case_c.images"])
    assert all(not t.requires_grad and t.grad_fn is None for t in out.tensors().values())


def test_cache_key_covers_weights_preprocessing_and_options(root, teacher, tmp_path):
    key = teacher.cache_key()
    assert len(key) == 64 and key == VGGTTeacher(tiny_cfg(root)).cache_key()
    others = [
        tiny_cfg(root, pool=2),
        tiny_cfg(root, image_size=42),
        tiny_cfg(root, resize_mode="pad"),
        tiny_cfg(root, feature_half="both"),
        tiny_cfg(root, dtype="bfloat16"),
        tiny_cfg(root, layers=[5]),
    ]
    keys = {VGGTTeacher(c).cache_key() for c in others}
    assert key not in keys and len(keys) == len(others)
    weights = load_file(str(root / "tiny_weights.safetensors"))
    weights["camera_head.empty_pose_tokens"] = weights["camera_head.empty_pose_tokens"] + 1
    from safetensors.torch import save_file

    save_file(weights, str(tmp_path / "other.safetensors"))
    assert VGGTTeacher(tiny_cfg(root, pretrained=str(tmp_path / "other.safetensors"))).cache_key() != key


def test_bfloat16_is_close_to_float32(root, teacher, io):
    images = io["case_a.images"]
    ref = teacher.encode(images, layers=[5])
    out = VGGTTeacher(tiny_cfg(root, dtype="bfloat16")).encode(images, layers=[5])
    for a, b in ((out.depth, ref.depth), (out.features[5], ref.features[5]), (out.pose_enc, ref.pose_enc)):
        assert a.dtype == torch.float32
        assert float((a - b).norm() / b.norm()) < 0.05


def test_invalid_options_raise_at_build(root):
    with pytest.raises(RecipeError, match="multiple of 14"):
        VGGTTeacher(tiny_cfg(root, image_size=50))


def test_register_commands_hook_adds_vggt_convert():
    import argparse

    from geovr.plugins import PluginHost

    host = PluginHost()  # only this plugin: no built-ins, no entry points
    host.register_object(plugin, "vggt-under-test", distribution="geovr-plugin-vggt")
    parser = argparse.ArgumentParser(prog="geovr")
    host.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["vggt", "convert", "model.pt", "out.safetensors", "--model-config", "tiny"])
    assert (args.src, args.dst, args.model_config, args.no_verify) == ("model.pt", "out.safetensors", "tiny", False)
    assert callable(args.func)


def test_xformers_option_needs_xformers(root):
    try:
        import xformers.ops  # noqa: F401
    except ImportError:
        with pytest.raises(RecipeError, match="needs the xformers package"):
            VGGTTeacher(tiny_cfg(root, attention="xformers"))
    else:  # installed: it must give the SDPA numbers
        frames = torch.rand(1, 2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
        out = VGGTTeacher(tiny_cfg(root, attention="xformers", layers=[5])).encode(frames)
        ref = VGGTTeacher(tiny_cfg(root, layers=[5])).encode(frames)
        torch.testing.assert_close(out.depth, ref.depth, atol=1e-4, rtol=1e-4)


def test_random_weights_from_seed_for_tiny_recipes():
    """``pretrained = ""`` draws the weights from ``seed``: same seed, same weights and cache key."""
    from geovr_plugin_vggt.config import VGGTTeacherConfig
    from geovr_plugin_vggt.teacher import VGGTTeacher

    def make(seed):
        return VGGTTeacher(
            VGGTTeacherConfig(pretrained="", model_config="tiny", image_size=56, layers=[1, 5], seed=seed)
        )

    a, b, c = make(0), make(0), make(1)
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in sa.items())
    assert any(not torch.equal(v, sc[k]) for k, v in sa.items() if v.is_floating_point() and v.numel() > 1)
    assert a.cache_key() == b.cache_key() != c.cache_key()
    assert a.checkpoint_path is None and not any(p.is_meta for p in a.parameters())
