"""Sample records and batching.

A *sample* (what every dataset component's ``__getitem__`` returns) is a dict with:

* ``frames``: ``[S,3,H,W]`` float32 in [0,1]; ``frame_indices``: ``[S]`` int64 (index in the video);
* ``question``: str; ``options``: list of str (``"A. chair"``) or ``None``; ``answer``: str;
* ``question_type``: str; ``scene_id``: str; ``sample_id``: str (unique per sample);
* optional ground truth: ``depth`` ``[S,H,W]`` metres, ``intrinsics`` ``[S,3,3]``,
  ``extrinsics`` ``[S,3,4]`` world-to-camera (OpenCV).

:func:`collate` stacks samples into a :class:`geovr.protocols.Batch` (all samples of a batch must share
S, H, W; ground truth is kept only if every sample has it).
"""

from __future__ import annotations

from collections.abc import Sequence

from geovr.protocols import Batch

SAMPLE_KEYS = ("frames", "frame_indices", "question", "options", "answer", "question_type", "scene_id",
               "sample_id", "depth", "intrinsics", "extrinsics")


def collate(samples: Sequence[dict]) -> Batch:
    """Stack sample dicts into a :class:`Batch`; see the module docstring for the keys."""
    import torch

    if not samples:
        raise ValueError("collate() needs at least one sample")
    shapes = {tuple(s["frames"].shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"samples in one batch must share [S,3,H,W]; got {sorted(shapes)}")

    def stack(key):
        vals = [s.get(key) for s in samples]
        if any(v is None for v in vals):
            return None
        return torch.stack([torch.as_tensor(v) for v in vals])

    frame_indices = stack("frame_indices")
    if frame_indices is None:
        S = samples[0]["frames"].shape[0]
        frame_indices = torch.arange(S).expand(len(samples), S).clone()
    return Batch(
        frames=torch.stack([s["frames"].float() for s in samples]),
        sample_ids=[str(s.get("sample_id", i)) for i, s in enumerate(samples)],
        questions=[s.get("question", "") for s in samples],
        answers=[str(s.get("answer", "")) for s in samples],
        options=[s.get("options") for s in samples],
        question_types=[s.get("question_type", "") for s in samples],
        scene_ids=[str(s.get("scene_id", "")) for s in samples],
        frame_indices=frame_indices.long(),
        depth=stack("depth"),
        intrinsics=stack("intrinsics"),
        extrinsics=stack("extrinsics"),
    )
