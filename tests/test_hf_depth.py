"""``hf_depth`` metric teacher on a tiny random Depth Anything model saved locally and loaded back."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

import geovr
from geovr.errors import CheckpointError, GeovrError
from geovr.protocols import Batch
from geovr.teachers.configs import HFDepthTeacherConfig
from geovr.teachers.hf_depth import HFDepthTeacher, build
from geovr.testing.contracts import check_teacher

CTX = types.SimpleNamespace(device="cpu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        out_indices=[1, 2, 3, 4],
        image_size=28,
        patch_size=14,
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type="metric",
        max_depth=20,
        patch_size=14,
    )
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # spread the weights so the random model's depth varies across pixels
        for p in model.parameters():
            p.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("tiny_depth_anything")
    model.save_pretrained(path)
    processor = DPTImageProcessor(size={"height": 28, "width": 42}, keep_aspect_ratio=True, ensure_multiple_of=14)
    processor.save_pretrained(path)
    return path


def frames():
    return torch.rand(1, 2, 3, 30, 40, generator=torch.Generator().manual_seed(3))


def test_contract_and_parity_with_the_plain_hf_model(model_dir):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    teacher = build(HFDepthTeacherConfig(model=str(model_dir), chunk=1), CTX)
    fr = frames()
    out = check_teacher(teacher, fr)
    assert out.metric_depth.shape == (1, 2, 30, 40) and out.features == {} and out.depth is None
    ref_model = AutoModelForDepthEstimation.from_pretrained(model_dir).eval()
    proc = AutoImageProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        pv = proc(images=list(fr[0]), return_tensors="pt", do_rescale=False)["pixel_values"]
        ref = ref_model(pixel_values=pv).predicted_depth
    ref = F.interpolate(ref[:, None], size=(30, 40), mode="bilinear", align_corners=False)[:, 0]
    assert float(ref.std()) > 1e-3  # the comparison is not between constants
    # chunk=1 here vs a batch of 2 in the reference: equal up to float32 rounding (|Δ| ≤ 1e-6·|depth|)
    torch.testing.assert_close(out.metric_depth[0], ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(teacher.encode(fr).metric_depth, out.metric_depth, rtol=1e-6, atol=1e-6)


def test_registered_by_the_builtin_teachers_plugin():
    """``hf_depth`` is a core teacher (``geovr.teachers``), registered through the hooks like any plugin's."""
    spec = geovr.get_registry().get("teacher", "hf_depth")
    assert spec.config is HFDepthTeacherConfig and spec.factory == "geovr.teachers.hf_depth:build"
    assert spec.plugin == "geovr.teachers.plugin" and spec.distribution == "geovr" and spec.summary
    assert spec.load_factory() is build
    assert HFDepthTeacherConfig().provides() == {"metric_depth"}
    assert HFDepthTeacherConfig().model == "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf"


def test_built_through_the_registry_and_frozen(model_dir):
    teacher = geovr.get_registry().get("teacher", "hf_depth").build({"model": str(model_dir)}, CTX)
    assert isinstance(teacher, HFDepthTeacher) and teacher.provides == {"metric_depth"}
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not teacher.model.training


def test_focal_length_scaling(model_dir):
    fr = frames()
    plain = build(HFDepthTeacherConfig(model=str(model_dir)), CTX).encode(fr).metric_depth
    from transformers import AutoImageProcessor

    in_w = AutoImageProcessor.from_pretrained(model_dir)(images=list(fr[0]), return_tensors="pt", do_rescale=False)[
        "pixel_values"
    ].shape[-1]
    K = torch.eye(3).expand(1, 2, 3, 3).clone()
    K[0, 0, 0, 0], K[0, 1, 0, 0] = 50.0, 80.0
    batch = Batch(frames=fr, sample_ids=["a"], questions=[""], answers=[""], intrinsics=K)
    scaled = build(HFDepthTeacherConfig(model=str(model_dir), reference_focal=100.0), CTX)
    out = scaled.encode(fr, batch=batch).metric_depth
    for s, fx in enumerate((50.0, 80.0)):
        torch.testing.assert_close(out[0, s], plain[0, s] * (fx * in_w / 40 / 100.0), rtol=1e-5, atol=1e-6)
    fallback = build(HFDepthTeacherConfig(model=str(model_dir), reference_focal=100.0, focal_px=50.0), CTX)
    torch.testing.assert_close(fallback.encode(fr).metric_depth[0, 0], out[0, 0], rtol=1e-5, atol=1e-6)
    with pytest.raises(GeovrError, match="focal_px"):
        scaled.encode(fr)


def test_cache_key_tracks_options_and_weights(model_dir):
    a = build(HFDepthTeacherConfig(model=str(model_dir)), CTX)
    b = build(HFDepthTeacherConfig(model=str(model_dir)), CTX)
    assert a.cache_key() == b.cache_key() and len(a.cache_key()) == 64
    assert build(HFDepthTeacherConfig(model=str(model_dir), reference_focal=500.0), CTX).cache_key() != a.cache_key()
    with torch.no_grad():
        next(b.model.parameters()).add_(1e-3)
    b._key = None
    assert b.cache_key() != a.cache_key()


def test_hub_id_is_read_from_the_local_cache(model_dir, tmp_path):
    import shutil

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--geovr-tests--tiny-depth"
    shutil.copytree(model_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    from_cache = build(HFDepthTeacherConfig(model="geovr-tests/tiny-depth", cache_dir=str(tmp_path / "hub")), CTX)
    from_dir = build(HFDepthTeacherConfig(model=str(model_dir)), CTX)
    fr = frames()
    torch.testing.assert_close(from_cache.encode(fr).metric_depth, from_dir.encode(fr).metric_depth, rtol=0, atol=0)


def test_loading_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build(HFDepthTeacherConfig(model=str(tmp_path / "missing")), CTX)
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        build(HFDepthTeacherConfig(model=str(tmp_path)), CTX)
    with pytest.raises(GeovrError, match="not in the local Hugging Face cache"):
        build(HFDepthTeacherConfig(model="geovr-tests/no-such-depth-model", cache_dir=str(tmp_path)), CTX)


@pytest.fixture(scope="module")
def sky_dir(tmp_path_factory):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    config = SegformerConfig(
        num_channels=3,
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=3,
        id2label={0: "wall", 1: "sky", 2: "floor"},
        label2id={"wall": 0, "sky": 1, "floor": 2},
    )
    torch.manual_seed(1)
    model = SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    path = tmp_path_factory.mktemp("tiny_segformer")
    model.save_pretrained(path)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_sky_segmentation_sets_nan_metric_depth(model_dir, sky_dir):
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    fr = frames()
    # reference: the plain segmentation model's softmax sky probability at frame resolution
    seg = AutoModelForSemanticSegmentation.from_pretrained(sky_dir).eval()
    with torch.no_grad():
        pv = AutoImageProcessor.from_pretrained(sky_dir)(images=list(fr[0]), return_tensors="pt", do_rescale=False)[
            "pixel_values"
        ]
        logits = F.interpolate(seg(pixel_values=pv).logits, size=(30, 40), mode="bilinear", align_corners=False)
    prob = logits.softmax(1)[:, 1]
    threshold = float(prob.median())  # the tiny random model: mark about half of the pixels as sky
    sky = prob >= threshold
    assert 0 < int(sky.sum()) < sky.numel()
    plain = build(HFDepthTeacherConfig(model=str(model_dir)), CTX).encode(fr).metric_depth
    teacher = build(HFDepthTeacherConfig(model=str(model_dir), sky_model=str(sky_dir), sky_threshold=threshold), CTX)
    out = teacher.encode(fr).metric_depth
    assert torch.equal(torch.isnan(out[0]), sky)
    torch.testing.assert_close(out[0][~sky], plain[0][~sky], rtol=1e-6, atol=1e-6)
    default = build(HFDepthTeacherConfig(model=str(model_dir), sky_model=str(sky_dir)), CTX)
    assert torch.equal(torch.isnan(default.encode(fr).metric_depth[0]), prob >= 0.3)  # the released 0.3
    assert (
        teacher.cache_key() != default.cache_key() != build(HFDepthTeacherConfig(model=str(model_dir)), CTX).cache_key()
    )
    with pytest.raises(CheckpointError, match="no class named like 'road'"):
        build(HFDepthTeacherConfig(model=str(model_dir), sky_model=str(sky_dir), sky_label="road"), CTX)
    assert "sky_threshold" in " ".join(HFDepthTeacherConfig(sky_threshold=0).check())
