"""Test helper: a tiny conversation data set written by the real writers, and label-span checks."""

from __future__ import annotations

from pathlib import Path


def tiny_conversation_batch(root: str | Path, *, image_size=(56, 56)):
    """Write a 1-scene synthetic set with ``geovr data synth --format conversations``'s writers under ``root``
    and return a collated :class:`~geovr.protocols.Batch` of ``[multi-turn sample, single-turn sample]``."""
    from geovr.data.collate import collate
    from geovr.data.configs import VideoConversationsConfig
    from geovr.data.conversations import VideoConversationsDataset
    from geovr.data.synthetic.cli import synthesize
    from geovr.data.writers import write_conversations

    root = Path(root)
    if not (root / "conversations.jsonl").is_file():
        synthesize(root, scenes=1, frames=8, size=(48, 64), seed=1, fps=4, progress=False)
        write_conversations(root)
    ds = VideoConversationsDataset(
        VideoConversationsConfig(
            annotations=str(root / "conversations.jsonl"),
            video_root=str(root),
            image_size=list(image_size),
            max_frames=4,
        )
    )
    samples = [ds[k] for k in range(len(ds))]
    multi = next(s for s in samples if len(s["conversations"]) == 4)
    single = next(s for s in samples if len(s["conversations"]) == 2)
    return collate([multi, single])


def labelled_runs(labels) -> list[list[int]]:
    """Contiguous runs of label ids that are not ``-100`` in a ``[L]`` label row."""
    runs, current = [], []
    for v in labels.tolist():
        if v != -100:
            current.append(v)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs
