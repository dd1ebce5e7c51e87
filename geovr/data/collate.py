"""Sample records and batching.

A *sample* (what every dataset component's ``__getitem__`` returns) is a dict with:

* ``frames``: ``[S,3,H,W]`` float32 in [0,1]; ``frame_indices``: ``[S]`` int64 (index in the video);
  ``frame_times``: ``[S]`` float seconds of each frame in its video (optional: container timestamps for
  decoded videos, ``index / fps`` for generated data);
* ``question``: str; ``options``: list of str (``"A. chair"``) or ``None``; ``answer``: str;
* ``question_type``: str; ``scene_id``: str; ``sample_id``: str (unique per sample);
* ``pixel_key``: str (optional but recommended): the identity of the frames' pixels — everything that
  determines them: the video (path + size + modification time, or a content hash; a generator's seed and
  index), the frame indices/times and every dataset option that changes pixels (resize, trajectory, …).
  Two samples with equal ``pixel_key`` must have identical ``frames`` (and ground truth); questions on the
  same video and frames should share it. The teacher cache (:mod:`geovr.train.teacher_cache`) keys entries by it;
  without it the cache hashes the frames tensor itself (exact, but it needs the decoded frames);
* optional ground truth: ``depth`` ``[S,H,W]`` metres, ``intrinsics`` ``[S,3,3]``,
  ``extrinsics`` ``[S,3,4]`` world-to-camera (OpenCV);
* optional conversation data (:mod:`geovr.data.conversations`): ``conversations`` (list of
  ``{"role", "text"}`` turns), ``source`` (data source name), ``skipped`` (bad records the sample
  replaced: ``[{"source", "reason", ...}]``, summed into ``Batch.skipped``).

:func:`collate` stacks samples into a :class:`geovr.protocols.Batch`; ground truth (and ``frame_times``)
is kept only if every sample has it. Samples may differ in ``S`` and in ``H, W`` (videos sampled at a
fixed rate, frames kept at their aspect ratio): the batch is then *ragged* — every per-frame tensor is
padded with zeros to the largest ``S`` (at the end) and ``H, W`` (bottom/right), and ``frame_counts``
``[B]`` / ``image_sizes`` ``[B,2]`` record each sample's valid part (see :class:`geovr.protocols.Batch`).
"""

from __future__ import annotations

from collections.abc import Sequence

from geovr.protocols import Batch

SAMPLE_KEYS = (
    "frames",
    "frame_indices",
    "frame_times",
    "question",
    "options",
    "answer",
    "question_type",
    "scene_id",
    "sample_id",
    "pixel_key",
    "depth",
    "intrinsics",
    "extrinsics",
    "conversations",
    "source",
    "skipped",
)


def collate(samples: Sequence[dict]) -> Batch:
    """Stack sample dicts into a :class:`Batch` (padded when ragged); see the module docstring."""
    import torch

    if not samples:
        raise ValueError("collate() needs at least one sample")
    for i, s in enumerate(samples):
        f = s.get("frames")
        if f is None or f.ndim != 4 or f.shape[1] != 3:
            raise ValueError(
                f"sample {i} ({s.get('sample_id', i)}): frames must be [S,3,H,W], got "
                f"{None if f is None else tuple(f.shape)}"
            )
    counts = [int(s["frames"].shape[0]) for s in samples]
    sizes = [tuple(int(x) for x in s["frames"].shape[-2:]) for s in samples]
    S, H, W = max(counts), max(h for h, _ in sizes), max(w for _, w in sizes)
    ragged = len(set(counts)) > 1 or len(set(sizes)) > 1

    def pad(t, pixels: bool):
        """Pad ``[S,...]`` to ``[S_max,...]``; with ``pixels`` the last two dims are ``H, W``."""
        t = torch.as_tensor(t)
        if not ragged:
            return t
        spec = [0, 0] * t.ndim  # F.pad order: (last_lo, last_hi, second-last_lo, ...)
        spec[-1] = S - t.shape[0]
        if pixels:
            spec[1], spec[3] = W - t.shape[-1], H - t.shape[-2]
        return torch.nn.functional.pad(t, spec)

    def stack(key, pixels: bool = False):
        vals = [s.get(key) for s in samples]
        if any(v is None for v in vals):
            return None
        return torch.stack([pad(v, pixels) for v in vals])

    frame_indices = stack("frame_indices")
    if frame_indices is None:
        frame_indices = torch.stack([pad(torch.arange(n), False) for n in counts])
    times = stack("frame_times")
    skipped: dict[str, int] = {}
    for s in samples:
        for bad in s.get("skipped") or ():
            key = f"{bad.get('source', '')}/{bad.get('reason', 'error')}"
            skipped[key] = skipped.get(key, 0) + 1
    convs = [s.get("conversations") for s in samples]
    return Batch(
        frames=torch.stack([pad(s["frames"].float(), True) for s in samples]),
        sample_ids=[str(s.get("sample_id", i)) for i, s in enumerate(samples)],
        questions=[s.get("question", "") for s in samples],
        answers=[str(s.get("answer", "")) for s in samples],
        options=[s.get("options") for s in samples],
        question_types=[s.get("question_type", "") for s in samples],
        scene_ids=[str(s.get("scene_id", "")) for s in samples],
        frame_indices=frame_indices.long(),
        depth=stack("depth", True),
        intrinsics=stack("intrinsics"),
        extrinsics=stack("extrinsics"),
        frame_times=None if times is None else times.float(),
        frame_counts=torch.tensor(counts, dtype=torch.long) if ragged else None,
        image_sizes=torch.tensor(sizes, dtype=torch.long) if ragged else None,
        pixel_keys=[str(s["pixel_key"]) for s in samples] if all(s.get("pixel_key") for s in samples) else [],
        conversations=convs if any(c is not None for c in convs) else None,
        sources=[str(s.get("source", "")) for s in samples],
        skipped=skipped,
    )
