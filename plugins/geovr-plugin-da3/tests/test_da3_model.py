"""Parity of geovr's DA3 networks with the official ``depth-anything-3`` package (golden data in
``tests/golden``, made by ``golden/make_golden.py``) and strict, name-based checkpoint loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from geovr.errors import CheckpointError
from geovr_plugin_da3.arch import load_arch
from geovr_plugin_da3.checkpoint import check_state_dict, convert_checkpoint, load_weights, read_state_dict
from geovr_plugin_da3.model import DA3Net
from geovr_plugin_da3.teacher import decode_c2w

GOLDEN = Path(__file__).resolve().parent / "golden"
ATOL, RTOL = 1e-5, 1e-4  # float32 on CPU; measured max |Δ| 0 (any-view) and 1.2e-7 (metric)
FEATURE_LAYERS = (2, 4, 5, 7)


@pytest.fixture(scope="module")
def tiny():
    net = DA3Net(load_arch("tiny")).eval()
    load_weights(net, GOLDEN / "da3_tiny_weights.safetensors")
    return net


@pytest.fixture(scope="module")
def tiny_metric():
    net = DA3Net(load_arch("tiny_metric")).eval()
    load_weights(net, GOLDEN / "metric_tiny_weights.safetensors")
    return net


@pytest.mark.parametrize("case", ["a", "b"])
def test_any_view_model_matches_the_official_package(tiny, io, case):
    """Case a: 3 views at 42×56 (position-table interpolation, reference-view path); case b: batch of 2
    videos × 2 views at 56×56. Depth, confidence, camera decoder, decoded cameras and the exported
    block features all agree."""
    images = io[f"{case}.images"]
    with torch.no_grad():
        out = tiny(images, export_layers=FEATURE_LAYERS)
    H, W = images.shape[-2:]
    _, w2c, K = decode_c2w(out["pose_enc_c2w"], (H, W))
    got = {
        "depth": out["depth"],
        "depth_conf": out["depth_conf"],
        "pose_enc_c2w": out["pose_enc_c2w"],
        "extrinsics_w2c": w2c[..., :3, :],
        "intrinsics": K,
        **{f"feat_layer_{k}": out["features"][k] for k in FEATURE_LAYERS},
    }
    for name, value in got.items():
        ref = io[f"{case}.{name}"]
        assert value.shape == ref.shape, name
        torch.testing.assert_close(value, ref, atol=ATOL, rtol=RTOL, msg=lambda m, n=name: f"{n}: {m}")


def test_metric_model_matches_the_official_package(tiny_metric, metric_io):
    with torch.no_grad():
        out = tiny_metric(metric_io["a.images"])
    torch.testing.assert_close(out["depth"], metric_io["a.depth_raw"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out["sky"], metric_io["a.sky"], atol=ATOL, rtol=RTOL)
    sky = metric_io["a.sky"] >= 0.3
    assert 0 < int(sky.sum()) < sky.numel(), "the reference case must contain sky and non-sky pixels"
    # the official post-processing only rewrites sky pixels
    torch.testing.assert_close(metric_io["a.depth_post"][~sky], out["depth"][~sky], atol=ATOL, rtol=RTOL)


def test_a_changed_weight_breaks_parity(io):
    """The comparison is sensitive: one perturbed camera-decoder weight changes the cameras."""
    state = load_file(str(GOLDEN / "da3_tiny_weights.safetensors"))
    state["cam_dec.fc_t.bias"] = state["cam_dec.fc_t.bias"] + 1e-2
    net = DA3Net(load_arch("tiny")).eval()
    net.load_state_dict(check_state_dict(net, state, "perturbed"))
    with torch.no_grad():
        out = net(io["a.images"])
    assert not torch.allclose(out["pose_enc_c2w"], io["a.pose_enc_c2w"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out["depth"], io["a.depth"], atol=ATOL, rtol=RTOL)  # the head is untouched


@pytest.mark.parametrize("name,official", [("giant", "da3-giant"), ("metric_large", "da3metric-large")])
def test_full_size_layout_equals_the_official_state_dict(name, official):
    """Every official tensor name and shape at full size (built on the meta device). The official
    DualDPT shares one LayerNorm between its 4 ray-branch levels; geovr holds 4 copies (192 extra
    parameters in the giant model, loaded from the same checkpoint tensors)."""
    ref = json.loads((GOLDEN / "official_shapes.json").read_text())[official]
    with torch.device("meta"):
        net = DA3Net(load_arch(name))
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == ref["state_dict"]
    extra = 3 * 2 * 32 if name == "giant" else 0
    assert sum(p.numel() for p in net.parameters()) == ref["parameters"] + extra
    if name == "giant":
        b = load_arch(name)["backbone"]
        assert (b["depth"], b["patch_size"], b["embed_dim"], b["out_layers"]) == (40, 14, 1536, [19, 27, 33, 39])


def test_hub_prefix_and_unused_gaussian_head_are_handled(tmp_path, caplog):
    state = load_file(str(GOLDEN / "da3_tiny_weights.safetensors"))
    hub = {f"model.{k}": v for k, v in state.items()}
    hub["model.gs_head.projects.0.weight"] = torch.zeros(2, 2)
    save_file(hub, str(tmp_path / "model.safetensors"))
    net = DA3Net(load_arch("tiny")).eval()
    with caplog.at_level("INFO"):
        load_weights(net, tmp_path)  # a directory holding model.safetensors
    assert "3-D Gaussian head are not used" in caplog.text
    torch.testing.assert_close(net.state_dict()["cam_dec.fc_t.bias"], state["cam_dec.fc_t.bias"])
    out = convert_checkpoint(tmp_path, tmp_path / "converted.safetensors", model_config="tiny")
    assert set(read_state_dict(out)) == set(state)


def test_mismatches_name_the_keys():
    state = load_file(str(GOLDEN / "da3_tiny_weights.safetensors"))
    net = DA3Net(load_arch("tiny"))
    broken = dict(state)
    broken.pop("cam_dec.fc_t.weight")
    broken["head.extra.weight"] = torch.zeros(1)
    broken["head.norm.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        check_state_dict(net, broken, "broken.safetensors")
    text = str(info.value)
    for needle in (
        "broken.safetensors",
        "missing keys (1): cam_dec.fc_t.weight",
        "unexpected keys (1): head.extra.weight",
        "head.norm.weight: checkpoint (3,) vs model (64,)",
    ):
        assert needle in text
    with pytest.raises(CheckpointError, match="does not match"):
        load_weights(DA3Net(load_arch("tiny_metric")), GOLDEN / "da3_tiny_weights.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(net, "./no/such/file.safetensors")
