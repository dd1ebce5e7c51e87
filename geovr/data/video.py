"""Reading and writing videos with PyAV (H.264 mp4), plus uniform frame sampling.

Frames cross this boundary as ``[S,3,H,W]`` float32 tensors in [0,1] (or ``[S,H,W,3]`` uint8 numpy
arrays when writing). Every failure a user can cause (missing file, undecodable data) raises
:class:`geovr.errors.DataError` naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from geovr.errors import DataError


def uniform_indices(total: int, num: int) -> np.ndarray:
    """``num`` frame indices spread uniformly over ``[0, total-1]`` (first and last included;
    indices repeat when ``num > total``)."""
    if total < 1:
        raise ValueError("a video needs at least one frame")
    if num == 1:
        return np.zeros(1, dtype=np.int64)
    return np.round(np.linspace(0, total - 1, num)).astype(np.int64)


def fps_indices(
    total: int, source_fps: float, fps: float = 2.0, min_frames: int = 4, max_frames: int = 32
) -> np.ndarray:
    """Frame indices for sampling ``fps`` frames per second of a ``total``-frame video recorded at
    ``source_fps``, as Qwen's video processors do: ``int(duration · fps)`` frames clamped to
    ``[min_frames, max_frames]`` (and to ``total``), spread uniformly (:func:`uniform_indices`).
    The released GeoVR training uses 2 fps, 4 to 32 frames."""
    if source_fps <= 0:
        raise ValueError(f"source_fps must be > 0, got {source_fps}")
    n = int(total / source_fps * fps)
    n = max(1, min(max(n, min_frames), max_frames, total))
    return uniform_indices(total, n)


def _to_uint8(frames) -> np.ndarray:
    """``[S,3,H,W]`` float in [0,1] (tensor or array) or ``[S,H,W,3]`` uint8 → ``[S,H,W,3]`` uint8."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype == np.uint8 and frames.shape[-1] == 3:
        return np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be [S,3,H,W] floats in [0,1] or [S,H,W,3] uint8, got {frames.shape}")
    return np.ascontiguousarray((np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1))


def write_video(
    path: str | os.PathLike, frames, fps: int = 10, crf: int = 16, preset: str = "medium", threads: int = 0
) -> None:
    """Write ``frames`` (see :func:`_to_uint8`) to an H.264 mp4 at ``path`` (yuv420p, so H and W
    must be even). ``crf`` is the x264 quality (lower = better; 16 is visually lossless); ``preset``
    the x264 speed/size trade-off (``"veryfast"`` encodes several times faster at the same quality,
    in a larger file); ``threads`` the x264 threads (0 = x264 chooses from the machine's cores; a
    fixed number makes the bytes independent of the machine)."""
    import av

    rgb = _to_uint8(frames)
    S, H, W, _ = rgb.shape
    if H % 2 or W % 2:
        raise ValueError(f"H.264 (yuv420p) needs an even frame size, got {H}x{W}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset, **({"threads": str(threads)} if threads else {})}
        for img in rgb:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def count_frames(path: str | os.PathLike, *, trust_header: bool = False) -> int:
    """Number of decodable frames of the video at ``path`` (with ``trust_header``, the container's
    frame count when it has one, which avoids decoding the video twice)."""
    if trust_header:
        import av

        try:
            with av.open(str(path)) as container:
                n = container.streams.video[0].frames if container.streams.video else 0
            if n > 0:
                return int(n)
        except (av.error.FFmpegError, OSError, ValueError):
            pass  # fall through: decoding reports the error with the path
    return sum(1 for _ in _decode(path))


def _decode(path):
    import av

    p = Path(path)
    if not p.is_file():
        raise DataError(f"video not found: {p}")
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise DataError(f"no video stream in {p}")
            yield from container.decode(video=0)
    except DataError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise DataError(f"cannot decode video {p}: {type(exc).__name__}: {exc}") from exc


def first_frame(path: str | os.PathLike) -> np.ndarray:
    """First frame of the video at ``path`` as ``[H,W,3]`` uint8 RGB (the values :func:`read_video`
    returns for frame 0, times 255), decoded without the float round trip. Raises :class:`DataError`
    naming the path when it is missing, corrupt or empty."""
    for frame in _decode(path):
        return frame.to_ndarray(format="rgb24")
    raise DataError(f"video has zero decodable frames: {path} (truncated or corrupt file?)")


def read_video(path: str | os.PathLike, num_frames: int | None = None, indices=None):
    """Decode ``path`` → ``(frames [N,3,H,W] float32 in [0,1], indices [N] int64)``.

    With ``num_frames`` the frames are sampled uniformly (:func:`uniform_indices`); with ``indices``
    exactly those are returned; with neither, every frame. Raises :class:`DataError` naming the
    path when the file is missing, corrupt, or shorter than a requested index. :func:`read_video_timed`
    also returns each frame's time in seconds.
    """
    frames, idx, _ = read_video_timed(path, num_frames=num_frames, indices=indices)
    return frames, idx


def read_video_timed(path: str | os.PathLike, num_frames: int | None = None, indices=None):
    """:func:`read_video` plus ``times [N]`` float32: each frame's presentation time in seconds from the
    start of the stream (the container's timestamps; ``index / average fps`` where a frame has none)."""
    import torch

    if num_frames is not None and indices is None:
        total = count_frames(path, trust_header=True)
        if total > 0:
            try:
                return read_video_timed(path, indices=uniform_indices(total, num_frames))
            except DataError:  # the header over-counted: count by decoding
                pass
        total = count_frames(path)
        if total == 0:
            raise DataError(f"video has zero decodable frames: {path} (truncated or corrupt file?)")
        return read_video_timed(path, indices=uniform_indices(total, num_frames))
    wanted = None if indices is None else np.asarray(indices, dtype=np.int64)
    keep: dict[int, np.ndarray] = {}
    stamps: dict[int, float | None] = {}
    wanted_set = None if wanted is None else set(wanted.tolist())
    last, start = -1, None
    for i, frame in enumerate(_decode(path)):
        last = i
        if i == 0:
            start = frame.time
        if wanted_set is None or i in wanted_set:
            keep[i] = frame.to_ndarray(format="rgb24")
            stamps[i] = frame.time
        if wanted is not None and i >= wanted.max():
            break
    if last < 0:
        raise DataError(f"video has zero decodable frames: {path} (truncated or corrupt file?)")
    if wanted is None:
        wanted = np.arange(last + 1)
    missing = [int(i) for i in wanted if int(i) not in keep]
    if missing:
        raise DataError(f"video {path} has {last + 1} frames; cannot read frame(s) {missing[:5]}")
    arr = np.stack([keep[int(i)] for i in wanted])
    frames = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    if start is None or any(stamps[int(i)] is None for i in wanted):
        fps = video_fps(path)
        times = [int(i) / fps for i in wanted]
    else:
        times = [stamps[int(i)] - start for i in wanted]
    return frames, torch.from_numpy(wanted.copy()), torch.tensor(times, dtype=torch.float32)


def video_fps(path: str | os.PathLike) -> float:
    """Average frame rate the container declares for the first video stream of ``path``."""
    import av

    p = Path(path)
    if not p.is_file():
        raise DataError(f"video not found: {p}")
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise DataError(f"no video stream in {p}")
            rate = container.streams.video[0].average_rate
    except DataError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise DataError(f"cannot read video {p}: {type(exc).__name__}: {exc}") from exc
    if not rate:
        raise DataError(f"video {p} declares no frame rate")
    return float(rate)
