"""Rate-based frame sampling with PyAV seeking (the released training's 2 fps, 4–32 frames rule).

:func:`read_video_rate` opens a video (a path or a binary file object, e.g. an mp4 held in memory from a
tar shard), reads its frame count and rate from the container header, picks the frames with
:func:`geovr.data.video.fps_indices` and decodes only what it needs: with ``seek=True`` it lists the key
frames (demuxing only) and jumps to the key frame before a wanted frame whenever that skips undecoded
frames, instead of decoding the whole video. Output: ``frames [S,3,H,W]`` float32 in [0,1], ``indices [S]`` int64 and
``times [S]`` float32 seconds from the start of the stream. Failures raise :class:`DataError` naming
``where``.
"""

from __future__ import annotations

import bisect
import os
from fractions import Fraction

import numpy as np

from geovr.data.video import fps_indices
from geovr.errors import DataError


def probe(container, where: str) -> tuple[int, float, Fraction, int]:
    """``(total_frames, fps, time_base, start_pts)`` of the first video stream, from the header."""
    if not container.streams.video:
        raise DataError(f"{where}: no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise DataError(f"{where}: the video declares no frame rate")
    fps = float(rate)
    tb = stream.time_base or Fraction(1, 1)
    start = int(stream.start_time or 0)
    total = int(stream.frames or 0)
    if total <= 0 and stream.duration:
        total = int(round(float(stream.duration * tb) * fps))
    if total <= 0 and container.duration:
        total = int(round(container.duration / 1e6 * fps))
    if total <= 0:
        raise DataError(f"{where}: the container gives neither a frame count nor a duration")
    return total, fps, tb, start


def read_video_rate(
    src, *, fps: float = 2.0, min_frames: int = 4, max_frames: int = 32, seek: bool = True, where: str | None = None
):
    """Sample ``src`` at ``fps`` frames per second (``int(duration·fps)`` frames clamped to
    ``[min_frames, max_frames]``, spread uniformly) → ``(frames [S,3,H,W], indices [S], times [S])``.

    ``src``: a path or a seekable binary file object. ``seek``: the key frames are listed by demuxing (no
    decoding), and before each wanted frame the reader jumps to the last key frame before it whenever that
    key frame lies beyond what has been decoded already; ``False`` decodes every frame up to the last
    wanted one. Both give the same frames.
    """
    import av
    import torch

    where = where or str(src)
    if isinstance(src, (str, os.PathLike)) and not os.path.isfile(src):
        raise DataError(f"video not found: {src}")
    try:
        with av.open(str(src) if isinstance(src, os.PathLike) else src) as container:
            total, rate, tb, start = probe(container, where)
            wanted = fps_indices(total, rate, fps=fps, min_frames=min_frames, max_frames=max_frames)
            stream = container.streams.video[0]
            keys: list[int] = []
            if seek:
                keys = sorted(
                    int(round(float((p.pts - start) * tb) * rate))
                    for p in container.demux(stream)
                    if p.is_keyframe and p.pts is not None
                )
                container.seek(start, stream=stream, backward=True, any_frame=False)
            got: list[np.ndarray] = []
            times: list[float] = []
            frames_iter, current = container.decode(stream), -1
            for target in wanted.tolist():
                k = bisect.bisect_right(keys, target) - 1
                if k >= 0 and keys[k] > current + 1:  # a key frame past what is decoded: jump to it
                    container.seek(
                        start + int(round(keys[k] / rate / tb)), stream=stream, backward=True, any_frame=False
                    )
                    frames_iter = container.decode(stream)
                frame = got_frame = None
                for frame in frames_iter:
                    current = current + 1 if frame.pts is None else int(round(float((frame.pts - start) * tb) * rate))
                    if current >= target:
                        got_frame = frame
                        break
                if got_frame is None:
                    if frame is None:
                        raise DataError(f"{where}: the video ends before frame {target} (header says {total} frames)")
                    got_frame = frame  # header over-counted by a frame or two: keep the last one
                got.append(got_frame.to_ndarray(format="rgb24"))
                t = got_frame.time if got_frame.time is not None else current / rate
                times.append(float(t) - float(start * tb))
    except DataError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, MemoryError) as exc:
        raise DataError(f"{where}: cannot decode video: {type(exc).__name__}: {exc}") from exc
    frames = torch.from_numpy(np.stack(got)).permute(0, 3, 1, 2).float().div_(255.0)
    return frames, torch.from_numpy(np.asarray(wanted, dtype=np.int64)), torch.tensor(times, dtype=torch.float32)
