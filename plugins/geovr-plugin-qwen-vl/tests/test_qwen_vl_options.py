"""Qwen-VL backbone: registration, recipe options and user-facing errors."""

import pytest
import torch

import geovr
import geovr.testing
from geovr.errors import CheckpointError, DataError, RecipeError
from geovr.protocols import GeometryRequest
from geovr.testing.contracts import check_backbone
from geovr_plugin_qwen_vl import plugin
from geovr_plugin_qwen_vl.backbone import resolve_attn_implementation, target_frame_size
from geovr_plugin_qwen_vl.config import Qwen3VLBackboneConfig
from geovr_plugin_qwen_vl.testing import cached_tiny_checkpoint, tiny_backbone, tiny_batch


def test_registered_through_the_hook_and_built_from_a_table(ckpt_dir, kind):
    with geovr.testing.registered(plugin, "qwen_vl_test", isolated=True) as host:
        spec = host.registry.get("backbone", kind)
        assert spec.factory.startswith("geovr_plugin_qwen_vl.backbone:")
        bb = spec.build({"pretrained": ckpt_dir, "dtype": "float32", "freeze": ["vision", "merger"]})
    assert bb.kind == kind and bb.num_layers == 2
    assert all(not p.requires_grad for n, p in bb.named_parameters() if ".visual." in n)
    with pytest.raises(RecipeError) as err:
        spec.parse_config({"pretrained": ckpt_dir, "freeze": ["vison"], "lora": {"rnk": 2}})
    assert "vison" in str(err.value) and "rnk" in str(err.value)


def test_offline_hub_id_gives_a_clear_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError) as err:
        tiny_backbone("qwen3_vl", pretrained="Qwen/Qwen3-VL-404B-NotCached")
    msg = str(err.value)
    assert "'Qwen/Qwen3-VL-404B-NotCached'" in msg and "not in the local HF cache" in msg
    with pytest.raises(CheckpointError, match="no such local directory"):
        tiny_backbone("qwen3_vl", pretrained="/nonexistent/dir/model")


def test_wrong_family_checkpoint_is_rejected():
    with pytest.raises(CheckpointError, match="'qwen2_5_vl' checkpoint"):
        tiny_backbone("qwen3_vl", pretrained=cached_tiny_checkpoint("qwen2_5_vl"))


def test_flash_attention_falls_back_loudly():
    if torch.cuda.is_available():
        pytest.skip("fallback is only exercised without CUDA")
    with pytest.warns(RuntimeWarning, match="FALLING BACK to 'sdpa'"):
        assert resolve_attn_implementation("flash_attention_2") == "sdpa"
    assert resolve_attn_implementation("sdpa") == "sdpa"


def test_freeze_llm_trains_merger_only(ckpt_dir, kind):
    bb = tiny_backbone(kind, pretrained=ckpt_dir, freeze=["vision", "llm"])
    check_backbone(
        bb,
        tiny_batch(1, 2),
        layers=(1,),
        frozen_prefixes=("language_model", "lm_head", "visual.blocks", "visual.patch_embed"),
    )
    names = {id(p): n for n, p in bb.named_parameters()}
    assert all(
        ".visual.merger" in names[id(p)] or "deepstack_merger" in names[id(p)] for p in bb.parameter_groups()["base"]
    )


def test_gradient_checkpointing_gives_the_same_gradients(ckpt_dir, kind):
    batch = tiny_batch(1, 2)
    grads = []
    for gc in (False, True):
        torch.manual_seed(0)
        bb = tiny_backbone(kind, pretrained=ckpt_dir, gradient_checkpointing=gc).train()
        assert bb.hf.model.language_model.gradient_checkpointing is gc
        out = bb(bb.prepare(batch), geometry=GeometryRequest(layers=(1,), camera_tokens=True, scale_token=True))
        (out.lm_loss + out.camera.sum() + out.hidden[1].mean()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in bb.parameter_groups()["base"]]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_frame_resizing_and_limits(backbone):
    cfg = Qwen3VLBackboneConfig(max_pixels=64 * 64, min_pixels=32 * 32)
    assert target_frame_size(480, 640, 32, cfg) == (32, 64)  # downscaled into the pixel budget
    assert target_frame_size(56, 56, 28, Qwen3VLBackboneConfig()) == (56, 56)
    assert target_frame_size(50, 50, 32, Qwen3VLBackboneConfig(frame_size=[96, 64])) == (96, 64)
    backbone.config.max_frames = 2
    with pytest.raises(DataError, match="max_frames=2"):
        backbone.prepare(tiny_batch(1, 3))
    with pytest.raises(geovr.GeovrError, match="outside 0..2"):
        backbone(backbone.prepare(tiny_batch(1, 2)), geometry=GeometryRequest(layers=(3,)))


def test_geovr_tiny_pretrained_is_materialised_once(tmp_path, monkeypatch):
    """``pretrained = "geovr-tiny"`` writes the tiny checkpoint once (atomically) and loads it through
    the regular directory path."""
    import os

    from geovr_plugin_qwen_vl.loading import materialize_tiny
    from geovr_plugin_qwen_vl.testing import tiny_backbone

    monkeypatch.setenv("GEOVR_CACHE_DIR", str(tmp_path))
    backbone = tiny_backbone("qwen2_5_vl", pretrained="geovr-tiny")
    path = tmp_path / "tiny" / "qwen2_5_vl-seed0"
    assert (path / "config.json").is_file() and backbone.num_layers == 2
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == ["qwen2_5_vl-seed0"]  # no temp dirs left
    mtime = os.path.getmtime(path / "config.json")
    assert materialize_tiny("qwen2_5_vl") == str(path) and os.path.getmtime(path / "config.json") == mtime


def test_building_the_tiny_model_keeps_the_global_rng(tmp_path, monkeypatch):
    """A run's first use of ``pretrained = "geovr-tiny"`` builds and saves the model (a cache miss);
    later runs load it. Both must leave torch's global RNG where the run's seed put it, or the heads
    built next would be initialised differently on a fresh machine than on a warm one."""
    import torch

    from geovr_plugin_qwen_vl.testing import tiny_backbone

    monkeypatch.setenv("GEOVR_CACHE_DIR", str(tmp_path))
    states = []
    for _ in ("miss", "hit"):
        torch.manual_seed(1234)
        tiny_backbone("qwen2_5_vl", pretrained="geovr-tiny")
        states.append(torch.get_rng_state())
    torch.manual_seed(1234)
    untouched = torch.get_rng_state()
    assert torch.equal(states[0], states[1])  # the same state whether the model was built or loaded
    from geovr_plugin_qwen_vl.tiny_models import tiny_model

    torch.manual_seed(1234)
    tiny_model("qwen2_5_vl")
    assert torch.equal(torch.get_rng_state(), untouched)  # the random init draws on a forked RNG


def test_smart_resize_keeps_aspect_under_the_released_budget():
    """Released training budget (Qwen3-VL video rule): 4·16 .. 32·300 blocks of 32×32 per video."""
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    cfg = Qwen3VLBackboneConfig(video_min_pixels=4 * 16 * 32 * 32, video_max_pixels=32 * 300 * 32 * 32)
    assert target_frame_size(480, 640, 32, cfg, num_frames=32, kind="qwen3_vl") == (480, 640)
    assert target_frame_size(640, 480, 32, cfg, num_frames=32, kind="qwen3_vl") == (640, 480)  # portrait kept
    h, w = target_frame_size(1080, 1920, 32, cfg, num_frames=32, kind="qwen3_vl")
    assert h * w <= 300 * 32 * 32 and abs(w / h - 16 / 9) < 0.15 and h % 32 == 0 and w % 32 == 0  # 736x384
    assert (h, w) == smart_resize(32, 1080, 1920, 2, 32, cfg.video_min_pixels, cfg.video_max_pixels)
    few = target_frame_size(1080, 1920, 32, cfg, num_frames=4, kind="qwen3_vl")  # fewer frames, more pixels each
    assert few[0] * few[1] > h * w


def test_inference_budget_is_per_frame_as_in_the_released_evaluation():
    cfg = Qwen3VLBackboneConfig(
        video_min_pixels=4 * 16 * 32 * 32,
        video_max_pixels=32 * 300 * 32 * 32,
        inference_min_pixels=4 * 32 * 32,
        inference_max_pixels=384 * 32 * 32,
    )
    # 128 evaluation frames of 480x640 keep their size (384 blocks per frame allowed) ...
    assert target_frame_size(480, 640, 32, cfg, num_frames=128, kind="qwen3_vl", inference=True) == (480, 640)
    # ... where the training budget (shared by all frames) would shrink them
    h, w = target_frame_size(480, 640, 32, cfg, num_frames=128, kind="qwen3_vl")
    assert h * w <= 32 * 300 * 32 * 32 // 128 + 32 * 32 * 4
    big = target_frame_size(1080, 1920, 32, cfg, num_frames=128, kind="qwen3_vl", inference=True)
    assert big[0] * big[1] <= 384 * 32 * 32
    assert any("inference_max_pixels" in p for p in Qwen3VLBackboneConfig(inference_max_pixels=0).check())
