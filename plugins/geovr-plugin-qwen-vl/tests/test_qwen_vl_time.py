"""Temporal positions from real frame times, and native temporal patching for generation."""

from __future__ import annotations

import re

import pytest
import torch

from geovr.data.collate import collate
from geovr.data.video import read_video_timed, write_video
from geovr.errors import DataError, GeovrError
from geovr.protocols import GeometryRequest
from geovr_plugin_qwen_vl.testing import tiny_backbone


@pytest.fixture(scope="module")
def clip_60s(tmp_path_factory):
    """A 60-second, 30-fps clip (1800 tiny frames) sampled at 16 frames."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    g = torch.Generator().manual_seed(0)
    write_video(
        path,
        (torch.rand(1800, 3, 16, 16, generator=g) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy(),
        fps=30,
        crf=40,
    )
    frames, idx, times = read_video_timed(path, num_frames=16)
    return {
        "frames": torch.nn.functional.interpolate(frames, size=(64, 64)),
        "frame_indices": idx,
        "frame_times": times,
        "question": "what?",
        "answer": "a",
        "options": None,
        "sample_id": "clip",
    }


def test_sampled_times_are_seconds(clip_60s):
    t = clip_60s["frame_times"]
    assert t.shape == (16,) and float(t[0]) == 0.0 and 59.0 < float(t[-1]) < 60.0
    torch.testing.assert_close(t, clip_60s["frame_indices"].float() / 30, atol=1e-3, rtol=0)


def _stamps(bb, inputs) -> list[float]:
    text = bb.processor.tokenizer.decode(inputs["input_ids"][0])
    return [float(x) for x in re.findall(r"<([0-9.]+) seconds>", text)]


def test_qwen3_timestamps_are_seconds(clip_60s):
    bb = tiny_backbone("qwen3_vl", min_pixels=16 * 16, max_pixels=64 * 64)
    batch = collate([clip_60s])
    stamps = _stamps(bb, bb.prepare(batch))  # training layout: one group per frame
    assert len(stamps) == 16 and stamps[0] == 0.0 and 59.0 < stamps[-1] <= 60.0  # 59.97 s printed as 60.0
    assert stamps == pytest.approx([round(float(x), 1) for x in clip_60s["frame_times"]], abs=0.051)
    native = _stamps(bb, bb.prepare(batch, with_answers=False, native=True))  # generation: frames share a patch
    t = clip_60s["frame_times"]
    assert native == pytest.approx([round(float(t[i] + t[i + 1]) / 2, 1) for i in range(0, 16, 2)], abs=0.051)


def test_qwen2_5_time_positions_are_seconds(clip_60s):
    bb = tiny_backbone("qwen2_5_vl", min_pixels=16 * 16, max_pixels=64 * 64)
    tps = bb.hf.config.vision_config.tokens_per_second
    batch = collate([clip_60s])
    for native, groups in ((False, 16), (True, 8)):
        inputs = bb.prepare(batch, with_answers=not native, native=native)
        pos = bb._rope_index(inputs)[0, 0]  # temporal axis [L]
        vid = pos[inputs["input_ids"][0] == bb.video_token_id]
        starts = sorted(set(vid.tolist()))
        assert len(starts) == groups
        span = (starts[-1] - starts[0]) / tps  # seconds between the first and last temporal group
        t = clip_60s["frame_times"]
        expected = float(t[-1] - t[0]) if not native else float(t[-2] - t[0])
        assert span == pytest.approx(expected, abs=1.0 / tps + 1e-6)


def test_native_generation_has_no_duplicated_frames():
    """Generation lays S frames into ceil(S/2) temporal groups (the released evaluation); training into S."""
    bb = tiny_backbone("qwen3_vl", min_pixels=16 * 16, max_pixels=64 * 64, max_frames=4, max_inference_frames=6)
    g = torch.Generator().manual_seed(1)
    sample = {
        "frames": torch.rand(5, 3, 64, 64, generator=g),
        "frame_times": torch.arange(5) * 0.5,
        "question": "q",
        "answer": "a",
        "options": None,
        "sample_id": "x",
    }
    batch = collate([sample])
    gen = bb.prepare(batch, with_answers=False, native=True)
    assert gen["video_grid_thw"][0, 0].item() == 3 and gen["_native"]
    four = collate([{**sample, "frames": sample["frames"][:4], "frame_times": sample["frame_times"][:4]}])
    assert bb.prepare(four, with_answers=False)["video_grid_thw"][0, 0].item() == 4  # geometry layout by default
    n_tokens = int((gen["input_ids"] == bb.video_token_id).sum())
    _, h, w = gen["_grids"][0]
    assert n_tokens == 3 * h * w
    out = bb.generate(batch, max_new_tokens=2)
    assert len(out) == 1
    with pytest.raises(GeovrError, match="native"):
        bb(gen, geometry=GeometryRequest(camera_tokens=True))
    with pytest.raises(DataError, match="max_frames=4"):  # 5 frames > the training limit
        bb.prepare(batch)
    too_many = collate([{**sample, "frames": torch.rand(7, 3, 64, 64), "frame_times": torch.arange(7) * 0.5}])
    with pytest.raises(DataError, match="max_inference_frames=6"):
        bb.prepare(too_many, with_answers=False, native=True)
    dup = tiny_backbone("qwen3_vl", min_pixels=16 * 16, max_pixels=64 * 64, inference_frames="duplicate")
    assert dup.prepare(batch, with_answers=False)["video_grid_thw"][0, 0].item() == 5
    calls = []
    for model in (dup, bb):  # generate() follows inference_frames
        real = model.prepare
        model.prepare = lambda b, _real=real, **kw: calls.append(kw["native"]) or _real(b, **kw)
        model.generate(
            collate([{**sample, "frames": sample["frames"][:4], "frame_times": sample["frame_times"][:4]}]),
            max_new_tokens=1,
        )
    assert calls == [False, True]


def test_published_eval_frame_count_default():
    bb = tiny_backbone("qwen3_vl", min_pixels=16 * 16, max_pixels=32 * 32)
    assert bb.config.max_inference_frames == 128 and bb.config.inference_frames == "native"
