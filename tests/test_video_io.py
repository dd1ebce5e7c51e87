"""PyAV H.264 round trip, uniform sampling, and errors naming the path."""

import numpy as np
import pytest
import torch

from geovr.data.video import count_frames, read_video, uniform_indices, write_video
from geovr.errors import DataError


def _frames(S=9, H=32, W=48):
    t = torch.linspace(0, 1, W)[None, None, None, :].expand(S, 3, H, W).clone()
    t[:, 1] = torch.linspace(0, 1, H)[:, None]
    t[:, 2] = (torch.arange(S) / S)[:, None, None]
    return t


def test_round_trip_within_codec_tolerance(tmp_path):
    frames = _frames()
    path = tmp_path / "v.mp4"
    write_video(path, frames, fps=5)
    assert count_frames(path) == 9
    back, idx = read_video(path)
    assert back.shape == frames.shape and torch.equal(idx, torch.arange(9))
    err = (back - frames).abs()
    assert err.mean() < 0.02 and err.max() < 0.2  # H.264 yuv420p at crf 16
    sub, idx = read_video(path, num_frames=4)
    assert idx.tolist() == [0, 3, 5, 8]
    assert (sub - frames[idx]).abs().mean() < 0.02
    exact, _ = read_video(path, indices=[2, 7])
    assert torch.allclose(exact, back[[2, 7]])


def test_uniform_indices():
    assert uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert uniform_indices(3, 5).tolist() == [0, 0, 1, 2, 2]
    assert uniform_indices(7, 1).tolist() == [0]


def test_missing_and_corrupt_video_name_the_path(tmp_path):
    with pytest.raises(DataError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4", num_frames=2)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(DataError, match="bad.mp4"):
        read_video(bad)
    write_video(tmp_path / "short.mp4", _frames(S=3))
    with pytest.raises(DataError, match="short.mp4"):
        read_video(tmp_path / "short.mp4", indices=[0, 5])


def test_write_rejects_odd_size(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "o.mp4", np.zeros((2, 31, 32, 3), np.uint8))


def test_fps_indices_follow_the_released_2fps_rule():
    from geovr.data.video import fps_indices

    assert len(fps_indices(1800, 30.0)) == 32  # 60 s at 2 fps = 120 → capped at 32
    assert len(fps_indices(150, 30.0)) == 10  # 5 s → 10 frames
    assert len(fps_indices(30, 30.0)) == 4  # 1 s → 2, raised to the minimum of 4
    assert len(fps_indices(3, 30.0)) == 3  # never more than the video has
    assert fps_indices(150, 30.0).tolist()[0] == 0 and fps_indices(150, 30.0).tolist()[-1] == 149


def test_read_video_timed_gives_container_seconds(tmp_path):
    from geovr.data.video import read_video_timed

    path = tmp_path / "t.mp4"
    write_video(path, np.zeros((90, 16, 16, 3), dtype=np.uint8), fps=30)
    frames, idx, times = read_video_timed(path, num_frames=4)
    assert idx.tolist() == [0, 30, 59, 89]
    np.testing.assert_allclose(times.numpy(), idx.numpy() / 30, atol=1e-3)


def test_video_with_zero_decodable_frames_names_the_path(tmp_path):
    """An mp4 whose header promises frames but whose data was cut off (faststart, truncated mdat)."""
    import av

    from geovr.eval.video import read_frames

    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=10)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for _ in range(4):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), dtype=np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    data = full.read_bytes()
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(data[: data.index(b"mdat") + 4])
    for read in (lambda: read_video(empty, num_frames=4), lambda: read_video(empty), lambda: read_frames(empty, 4)):
        with pytest.raises(DataError, match=f"video has zero decodable frames: {empty}"):
            read()
