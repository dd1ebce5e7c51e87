"""VSI-Bench frame sampling: which frames of a video the evaluator shows the model.

Decoding is :func:`geovr.data.video.read_video` (PyAV); this module adds the VSI-Bench index
convention and a frame count read from the container metadata (so a long video is decoded once, and
only up to the last sampled frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geovr.errors import DataError


def uniform_indices(total: int, num_frames: int) -> np.ndarray:
    """``min(num_frames, total)`` evenly spaced frame indices, first and last included:
    ``np.linspace(0, total - 1, n)`` truncated to int (lmms-eval's VSI-Bench convention). ``[n]`` int64."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    n = min(int(num_frames), total)
    return np.linspace(0, total - 1, n).astype(np.int64)


def count_frames(path: str | Path) -> int:
    """Number of video frames: the container's count when it records one, else by decoding."""
    from geovr.data.video import count_frames as _count

    return _count(path, trust_header=True)


def read_frames(path: str | Path, num_frames: int):
    """``num_frames`` uniformly sampled frames of the video at ``path``.

    Returns ``(frames [S,3,H,W] float32 in [0,1], indices [S] int64)``, ``S = min(num_frames, total)``.
    Raises :class:`DataError` naming the file when it is missing, unreadable or empty.
    """
    from geovr.data.video import count_frames as decode_count
    from geovr.data.video import read_video

    total = count_frames(path)
    if total <= 0:
        raise DataError(f"{path}: video has no frames")
    try:
        return read_video(path, indices=uniform_indices(total, num_frames))
    except DataError:  # the metadata overstated the frame count: count by decoding and retry once
        total = decode_count(path)
        if total <= 0:
            raise
        return read_video(path, indices=uniform_indices(total, num_frames))
