"""Parity of the VGGT re-implementation with the golden reference outputs (tiny model, cases a–d),
and the 1B configuration's parameter names/shapes against the official checkpoint layout."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from geovr import geometry  # noqa: E402
from geovr_plugin_vggt.model import VGGT  # noqa: E402
from geovr_plugin_vggt.testing import tiny_config, tiny_model  # noqa: E402

CASES = "abcd"
TOL = dict(atol=1e-5, rtol=1e-5)  # golden README: tokens, pose_enc, depth, points, confidences
TRACK_TOL = dict(atol=1e-4, rtol=1e-5)


@pytest.fixture(scope="module")
def model(root):
    return tiny_model(root)


@pytest.fixture(scope="module")
def outputs(model, io):
    """Forward of every case once: {case: (tokens_list, dino_tokens, predictions)}."""
    res = {}
    with torch.no_grad():
        for c in CASES:
            images = io[f"case_{c}.images"]
            B, S = images.shape[:2]
            tokens, psi = model.aggregator(images)
            assert psi == 5
            dino = model.aggregator.embed(images).reshape(B, S, -1, model.config["patch_embed"]["embed_dim"])
            res[c] = (tokens, dino, model(images, query_points=io[f"case_{c}.query_points"]))
    return res


def test_tiny_weights_load_strictly_with_reference_names(model, root):
    ref = load_file(str(root / "tiny_weights.safetensors"))
    sd = model.state_dict()
    assert set(sd) == set(ref)
    assert all(tuple(sd[k].shape) == tuple(ref[k].shape) for k in ref)
    assert sum(p.numel() for p in model.parameters()) == tiny_config(root)["param_count"] == 625_036


@pytest.mark.parametrize("case", CASES)
def test_aggregator_tokens_and_dino_patch_tokens(outputs, io, case):
    tokens, dino, _ = outputs[case]
    assert len(tokens) == 6
    torch.testing.assert_close(dino, io[f"case_{case}.dino_patch_tokens"], **TOL)
    for k, t in enumerate(tokens):
        torch.testing.assert_close(t, io[f"case_{case}.agg_tokens.{k}"], **TOL, msg=lambda m, k=k: f"layer {k}: {m}")


@pytest.mark.parametrize("case", CASES)
def test_camera_depth_point_outputs(outputs, io, case):
    _, _, out = outputs[case]
    g = lambda k: io[f"case_{case}.{k}"]  # noqa: E731
    torch.testing.assert_close(out["pose_enc"], g("pose_enc"), **TOL)
    assert len(out["pose_enc_list"]) == 4
    torch.testing.assert_close(torch.stack(out["pose_enc_list"]), g("pose_enc_list"), **TOL)
    for key in ("depth", "depth_conf", "world_points", "world_points_conf"):
        assert out[key].shape == g(key).shape, key
        torch.testing.assert_close(out[key], g(key), **TOL, msg=lambda m, key=key: f"{key}: {m}")
    assert bool((out["depth"] > 0).all()) and bool((out["depth_conf"] > 1).all())
    H, W = g("images").shape[-2:]
    ext, intr = geometry.pose_encoding_to_extri_intri(out["pose_enc"], (H, W))
    torch.testing.assert_close(ext, g("extrinsic"), **TOL)
    torch.testing.assert_close(intr, g("intrinsic"), atol=1e-4, rtol=1e-5)
    assert torch.equal(out["images"], g("images"))


@pytest.mark.parametrize("case", CASES)
def test_track_outputs(outputs, io, case):
    _, _, out = outputs[case]
    g = lambda k: io[f"case_{case}.{k}"]  # noqa: E731
    torch.testing.assert_close(out["track"], g("track"), **TRACK_TOL)
    torch.testing.assert_close(torch.stack(out["track_list"]), g("track_list"), **TRACK_TOL)
    torch.testing.assert_close(out["vis"], g("vis"), **TOL)
    torch.testing.assert_close(out["conf"], g("track_conf"), **TOL)
    # frame 0 is pinned to the query
    torch.testing.assert_close(out["track"][:, 0], g("query_points"), atol=0, rtol=0)


def test_heads_alone_on_stored_tokens(model, io):
    """Feeding the stored aggregator outputs to the heads isolates them from the backbone."""
    for c in "ad":
        tokens = [io[f"case_{c}.agg_tokens.{k}"] for k in range(6)]
        images = io[f"case_{c}.images"]
        with torch.no_grad():
            torch.testing.assert_close(model.camera_head(tokens)[-1], io[f"case_{c}.pose_enc"], **TOL)
            depth, conf = model.depth_head(tokens, images, 5)
            pts, _ = model.point_head(tokens, images, 5)
        torch.testing.assert_close(depth, io[f"case_{c}.depth"], **TOL)
        torch.testing.assert_close(conf, io[f"case_{c}.depth_conf"], **TOL)
        torch.testing.assert_close(pts, io[f"case_{c}.world_points"], **TOL)


def test_math_attention_matches_sdpa(model, io):
    images = io["case_a.images"]
    try:
        with torch.no_grad():
            model.set_attention("math")
            tokens, _ = model.aggregator(images)
    finally:
        model.set_attention("sdpa")
    torch.testing.assert_close(tokens[-1], io["case_a.agg_tokens.5"], **TOL)
    with pytest.raises(ValueError, match="unknown attention backend"):
        model.set_attention("flash9")


def test_dpt_frame_chunks_are_equivalent(model, io):
    tokens = [io[f"case_a.agg_tokens.{k}"] for k in range(6)]
    images = io["case_a.images"]  # S = 3
    head = model.depth_head
    try:
        head.frames_chunk_size = 1
        with torch.no_grad():
            depth, _ = head(tokens, images, 5)
    finally:
        head.frames_chunk_size = 8
    torch.testing.assert_close(depth, io["case_a.depth"], **TOL)


def test_unbatched_inputs_and_disabled_heads(root, io):
    model = tiny_model(root, enable_track=False, enable_point=False)
    assert model.track_head is None and model.point_head is None
    assert not any(k.startswith(("track_head.", "point_head.")) for k in model.state_dict())
    with torch.no_grad():
        out = model(io["case_b.images"][1])  # [S,3,H,W]
    assert set(out) == {"pose_enc", "pose_enc_list", "depth", "depth_conf", "images"}
    torch.testing.assert_close(out["depth"], io["case_b.depth"][1:], **TOL)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.rand(1, 1, 3, 30, 28))


def test_unbatched_query_points(model, io):
    with torch.no_grad():
        out = model(io["case_c.images"], query_points=io["case_c.query_points"][0])
    torch.testing.assert_close(out["track"], io["case_c.track"], **TRACK_TOL)


def test_1b_on_meta_device_matches_official_checkpoint_layout(root):
    ref = json.loads((root / "vggt_1b_state_dict_shapes.json").read_text())
    with torch.device("meta"):
        model = VGGT()
    sd = model.state_dict()
    assert len(sd) == len(ref) == 1797
    assert list(sd) == list(ref)  # same names, same (module-definition) order
    assert {k: list(v.shape) for k, v in sd.items()} == ref
    parts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("aggregator", "camera_head", "point_head", "depth_head", "track_head")
    }
    assert parts == {
        "aggregator": 909_112_320,
        "camera_head": 216_174_610,
        "point_head": 32_654_628,
        "depth_head": 32_654_562,
        "track_head": 65_941_396,
    }
    assert sum(p.numel() for p in model.parameters()) == 1_256_537_516
    assert model.depth == 24
    # normalisation constants are non-persistent buffers
    assert not any("_resnet" in k for k in sd)
    # from_config("1b") is the same model
    with torch.device("meta"):
        again = VGGT.from_config("1b")
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in sd.items()}


def test_config_sources(root, tmp_path):
    from geovr.errors import CheckpointError
    from geovr_plugin_vggt.model import load_config

    tiny = tiny_config(root)
    assert load_config("tiny") == tiny  # the package data (configs/tiny.json) equals the golden config
    assert load_config(str(root / "tiny_config.json")) == tiny  # {"tiny": {...}} wrapper
    (tmp_path / "plain.json").write_text(json.dumps(tiny))
    assert load_config(tmp_path / "plain.json") == tiny
    with pytest.raises(CheckpointError, match="cannot read VGGT model config"):
        load_config(tmp_path / "missing.json")
    with torch.device("meta"):
        m = VGGT.from_config("tiny", enable_track=False)
    assert m.depth == 6 and m.track_head is None
