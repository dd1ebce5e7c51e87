"""The ``dust3r`` teacher: registration, recipe options, preprocessing, the Teacher contract with
the tiny network, weights loading through the registry, cache keys."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from geovr import hookimpl
from geovr.errors import CheckpointError, RecipeError
from geovr.plugins import get_registry
from geovr.protocols import Batch, BuildContext, StudentOutput
from geovr.recipe.validate import validate
from geovr.testing import registered
from geovr.testing.contracts import check_objective, check_teacher
from geovr.testing.golden import golden_dir
from geovr_plugin_dust3r.config import DUSt3RTeacherConfig
from geovr_plugin_dust3r.preprocess import plan, preprocess
from geovr_plugin_dust3r.teacher import DUSt3RTeacher, load_teacher

TINY = {"pretrained": "", "model_config": "tiny", "image_size": 48, "niter": 20}  # global alignment, short


def _frames(B=1, S=3, H=36, W=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, S, 3, H, W, generator=g)


@pytest.fixture(scope="module")
def tiny_teacher():
    return get_registry().get("teacher", "dust3r").build(dict(TINY), BuildContext())


def test_preprocess_plan_matches_reference_rules():
    assert plan(480, 640, 512) == ((384, 512), (0, 0, 384, 512))
    assert plan(720, 1280, 512) == ((288, 512), (0, 0, 288, 512))
    assert plan(500, 500, 512) == ((512, 512), (64, 0, 384, 512))  # square → 4:3
    assert plan(500, 500, 512, square_ok=True) == ((512, 512), (0, 0, 512, 512))
    assert plan(40, 40, 48) == ((48, 48), (8, 0, 32, 48))  # 4:3 rounded down to a multiple of 16
    (rh, rw), (top, left, h, w) = plan(375, 500, 512)  # 512x384 → crop 384 rows x 512 cols
    assert (rh, rw) == (384, 512) and (h, w) == (384, 512)
    assert plan(480, 640, 224) == ((224, 299), (0, 37, 224, 224))
    (rh, rw), (top, left, h, w) = plan(300, 530, 512)  # 290 rows → 288
    assert (rh, rw, h, w, top) == (290, 512, 288, 512, 1)
    x = preprocess(torch.rand(2, 3, 480, 640), 512)
    assert x.shape == (2, 3, 384, 512) and x.min() >= -1 and x.max() <= 1
    y = torch.full((1, 3, 20, 40), 0.25)
    assert torch.allclose(preprocess(y, 32), torch.full((1, 3, 16, 32), -0.5))


def test_registered_with_torch_free_config():
    spec = get_registry().get("teacher", "dust3r")
    assert spec.distribution == "geovr-plugin-dust3r"
    assert spec.factory == "geovr_plugin_dust3r.teacher:build"
    cfg = spec.parse_config({})
    assert cfg.provides() == frozenset(
        {"features", "depth", "depth_conf", "pose_enc", "intrinsics", "extrinsics", "points"}
    )
    assert cfg.feature_layers() == (2, 5, 8, 11)
    assert spec.parse_config({"model_config": "tiny"}).feature_layers() == (0, 1, 2, 3)


def test_config_problems_are_reported():
    spec = get_registry().get("teacher", "dust3r")
    with pytest.raises(RecipeError) as info:
        spec.parse_config({"model_config": "tiny", "layers": [1, 4], "image_size": 8})
    text = str(info.value)
    assert "layers [4] outside the decoder depth" in text and "image_size must be >= 16" in text
    with pytest.raises(RecipeError, match="did you mean 'pairing'"):
        spec.parse_config({"pairng": "first"})
    with pytest.raises(RecipeError, match="nope.json"):
        spec.parse_config({"model_config": "nope.json"})
    with pytest.raises(RecipeError) as info:
        spec.parse_config({"graph": "swin-0", "niter": -1, "lr": 0.0, "lr_min": 0.5, "alignment": "bundle"})
    text = str(info.value)
    assert "teacher.alignment: expected" in text
    with pytest.raises(RecipeError) as info:
        spec.parse_config({"graph": "swin-0", "niter": -1, "lr": 0.0, "lr_min": 0.5})
    text = str(info.value)
    for needle in (
        "graph window K must be >= 1, got 'swin-0'",
        "niter must be >= 0",
        "lr must be > 0",
        "lr_min must be in [0, lr]",
    ):
        assert needle in text
    with pytest.raises(RecipeError, match="graph must be 'complete', 'oneref', 'swin-K'"):
        spec.parse_config({"graph": "ring"})
    cfg = spec.parse_config({})
    assert (cfg.alignment, cfg.graph, cfg.niter, cfg.lr, cfg.schedule) == ("global", "complete", 300, 0.01, "cosine")


class _BackbonePlugin:
    """Registers a placeholder backbone so that recipes validate without any backbone plugin."""

    @hookimpl
    def register_backbones(self, register):
        register("dust3r_test_backbone", "builtins:dict")


def test_recipe_with_dust3r_teacher_validates():
    raw = {
        "name": "t",
        "backbone": {"component": "dust3r_test_backbone"},
        "teacher": {"component": "dust3r", **TINY},
        "objectives": [{"component": "camera_pose"}, {"component": "depth"}, {"component": "feature_distill"}],
    }
    with registered(_BackbonePlugin(), "dust3r-test-backbone"):
        recipe = validate(raw)
        assert recipe.teacher.config.model_config == "tiny"
        raw["teacher"]["layers"] = [7]
        with pytest.raises(RecipeError, match="teacher: layers"):
            validate(raw)


def test_check_teacher_with_tiny_network(tiny_teacher):
    assert isinstance(tiny_teacher, DUSt3RTeacher)
    assert tiny_teacher.num_layers == 4 and tiny_teacher.feature_dim == 32 and tiny_teacher.layers == (0, 1, 2, 3)
    out = check_teacher(tiny_teacher, _frames(B=2, S=3))
    # 36x48 → long side 48 → 36x48 → crop 32x48 (multiples of 16)
    assert out.depth.shape == (2, 3, 32, 48) and out.points.shape == (2, 3, 32, 48, 3)
    assert out.features[3].shape == (2, 3, 2, 3, 32)
    torch.testing.assert_close(out.extrinsics[:, 0], torch.eye(3, 4).expand(2, 3, 4), atol=0, rtol=0)
    torch.testing.assert_close(
        out.pose_enc[:, 0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]).expand(2, 7), atol=0, rtol=0
    )
    for t in (out.pose_enc, out.intrinsics, out.depth_conf, out.points):
        assert torch.isfinite(t).all()
    assert (out.depth_conf > 1).all()
    # rotations are orthonormal
    R = out.extrinsics[..., :3]
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand_as(R), atol=1e-5, rtol=0)


def test_encode_is_deterministic_and_layers_are_checked(tiny_teacher):
    frames = _frames(S=2)
    a = tiny_teacher.encode(frames, layers=[0])
    b = tiny_teacher.encode(frames, layers=[0])
    assert set(a.features) == {0}
    for k, v in a.tensors().items():
        assert torch.equal(v, b.tensors()[k]), k
    with pytest.raises(ValueError, match="outside 0..3"):
        tiny_teacher.encode(frames, layers=[4])


def test_features_are_frame_own_decoder_tokens():
    """With one reference, feature grids equal the view-1 decoder tokens of the pair (frame i, frame 0)."""
    frames = _frames(S=3, H=32, W=48)
    teacher = load_teacher(DUSt3RTeacherConfig(**TINY, alignment="oneref"))
    out = teacher.encode(frames, layers=[1, 3])
    img = frames[0] * 2 - 1
    with torch.no_grad():
        dec = teacher.model.encode_decode(img[[2]], img[[0]])
        pred1, _ = teacher.model.heads(dec)
    torch.testing.assert_close(out.features[1][0, 2], dec.tokens1[2][0].reshape(2, 3, 32), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.features[3][0, 2], dec.tokens1[4][0].reshape(2, 3, 32), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.depth_conf[0, 2], pred1["conf"][0], atol=1e-5, rtol=1e-5)


def test_frozen_and_eval(tiny_teacher):
    tiny_teacher.train()
    assert not tiny_teacher.training and not tiny_teacher.model.training
    assert not any(p.requires_grad for p in tiny_teacher.parameters())


def test_pretrained_file_cache_key_and_bfloat16(tmp_path):
    weights = load_file(
        str(golden_dir("dust3r", Path(__file__).resolve().parent / "golden") / "tiny_weights.safetensors")
    )
    path = tmp_path / "tiny.safetensors"
    save_file(weights, str(path))
    teacher = load_teacher(DUSt3RTeacherConfig(**{**TINY, "pretrained": str(path)}))
    for k, v in weights.items():
        assert torch.equal(teacher.model.state_dict()[k], v), k
    random = load_teacher(DUSt3RTeacherConfig(**TINY))
    keys = {
        teacher.cache_key(),
        random.cache_key(),
        load_teacher(DUSt3RTeacherConfig(**{**TINY, "seed": 1})).cache_key(),
        load_teacher(DUSt3RTeacherConfig(**{**TINY, "image_size": 64})).cache_key(),
        load_teacher(DUSt3RTeacherConfig(**{**TINY, "pairing": "keyframes"})).cache_key(),
        load_teacher(DUSt3RTeacherConfig(**{**TINY, "alignment": "oneref"})).cache_key(),
        load_teacher(DUSt3RTeacherConfig(**{**TINY, "graph": "swin-2"})).cache_key(),
        load_teacher(DUSt3RTeacherConfig(**{**TINY, "niter": 21})).cache_key(),
    }
    assert len(keys) == 8
    assert random.cache_key() == load_teacher(DUSt3RTeacherConfig(**TINY, pair_batch_size=2)).cache_key()
    frames = _frames(S=2)
    # one reference: the network's own change (global alignment of random-weight pointmaps amplifies it)
    f32 = load_teacher(DUSt3RTeacherConfig(**{**TINY, "pretrained": str(path), "alignment": "oneref"})).encode(frames)
    bf16 = load_teacher(
        DUSt3RTeacherConfig(**{**TINY, "pretrained": str(path), "dtype": "bfloat16", "alignment": "oneref"})
    ).encode(frames)
    assert bf16.points.dtype == torch.float32
    rel = ((bf16.points - f32.points).norm(dim=-1) / f32.points.norm(dim=-1)).median()
    assert 0 < rel < 0.1  # bfloat16 autocast changes the numbers, slightly
    with pytest.raises(CheckpointError, match="missing.pth"):
        load_teacher(DUSt3RTeacherConfig(**{**TINY, "pretrained": str(tmp_path / "missing.pth")}))


def test_pair_batching_does_not_change_outputs():
    frames = _frames(S=3)
    a = load_teacher(DUSt3RTeacherConfig(**TINY, pair_batch_size=1)).encode(frames)
    b = load_teacher(DUSt3RTeacherConfig(**TINY, pair_batch_size=16)).encode(frames)
    for k, v in a.tensors().items():
        torch.testing.assert_close(v, b.tensors()[k], atol=1e-4, rtol=1e-4, msg=k)


@pytest.mark.parametrize(
    "name, options",
    [
        ("camera_pose", {"hidden_dim": 16}),
        ("depth", {"channels": [8, 8, 8, 8], "features": 8}),
        ("depth", {"channels": [8, 8, 8, 8], "features": 8, "head": "dpt", "loss": "conf"}),
        ("feature_distill", {}),
    ],
)
def test_builtin_objectives_consume_the_outputs(tiny_teacher, name, options):
    """Objectives built against this teacher (default layer mapping) train on its outputs."""
    ctx = BuildContext(teacher=tiny_teacher, backbone=SimpleNamespace(hidden_size=16, num_layers=4))
    objective = get_registry().get("objective", name).build(dict(options), ctx)
    frames = _frames(S=3)
    teacher_out = tiny_teacher.encode(frames)
    need = objective.student_needs
    g = torch.Generator().manual_seed(0)
    student = StudentOutput(
        lm_loss=torch.tensor(0.0),
        hidden={layer: torch.randn(1, 3, 4, 6, 16, generator=g).requires_grad_() for layer in need.layers},
        camera=torch.randn(1, 3, 16, generator=g).requires_grad_() if need.camera_tokens else None,
    )
    batch = Batch(frames=frames, sample_ids=["s"], questions=["q"], answers=["a"])
    out = check_objective(objective, student, teacher_out, batch, provides=tiny_teacher.provides)
    assert torch.isfinite(out.loss)
