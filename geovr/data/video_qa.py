"""The ``video_qa`` dataset: any VSI-format jsonl plus a directory of videos, read with PyAV.

Each jsonl line is a record ``{id, dataset, scene_name, question_type, question, options,
ground_truth}`` (VSI-Bench's fields). The video of a record is ``<video_root>/<scene_name>.mp4`` or
``<video_root>/<dataset>/<scene_name>.mp4``. ``num_frames`` frames are sampled uniformly. With a
``geometry_root``, ``<scene_name>.safetensors`` (``depth [F,H,W]``, ``intrinsics [F,3,3]``,
``extrinsics [F,3,4]``, as written by ``geovr data synth``) adds ground truth for the sampled frames.
Samples follow :mod:`geovr.data.collate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from geovr.data.configs import VideoQAConfig
from geovr.data.jsonl import check_fields, iter_jsonl, positive_number
from geovr.data.video import read_video_timed
from geovr.errors import DataError

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

RECORD_KEYS = ("id", "scene_name", "question_type", "question", "ground_truth")
#: Field rules of a record (:data:`geovr.data.jsonl.FIELD_RULES`).
RECORD_FIELDS = {
    "id": "id",
    "scene_name": "id",
    "dataset": "str?",
    "question_type": "str",
    "question": "str",
    "options": "options",
    "ground_truth": "answer",
}


def load_records(path: str | Path) -> list[dict]:
    """Parse a VSI-format jsonl file; errors name ``path:line``: a missing field, a field of the wrong type
    (a ``null``/list/object answer, a non-string question, ``options`` given as one string, ...), or the
    ground truth of a VSI numerical question type that is not a finite number > 0."""
    from geovr.eval.vsibench import NUMERICAL_TASKS

    records = []
    for where, rec in iter_jsonl(path):
        missing = [k for k in RECORD_KEYS if k not in rec]
        if missing:
            raise DataError(f"{where}: record lacks {missing} (VSI fields: {list(RECORD_KEYS)})")
        check_fields(rec, where, RECORD_FIELDS)
        if rec["question_type"] in NUMERICAL_TASKS:
            positive_number(rec["ground_truth"], where)
        records.append(rec)
    return records


def resize_sample(frames, size, depth=None, intrinsics=None):
    """Resize frames ``[S,3,H,W]`` (bilinear, antialiased), depth ``[S,H,W]`` (nearest) and scale
    intrinsics ``[S,3,3]`` to ``size = (H', W')`` (pixel centres at integer coordinates)."""
    H, W = frames.shape[-2:]
    h, w = size
    if (H, W) == (h, w):
        return frames, depth, intrinsics
    frames = F.interpolate(frames, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    if depth is not None:
        depth = F.interpolate(depth[:, None], size=(h, w), mode="nearest-exact")[:, 0]
    if intrinsics is not None:
        sx, sy = w / W, h / H
        intrinsics = intrinsics.clone()
        intrinsics[:, 0, 0] *= sx
        intrinsics[:, 1, 1] *= sy
        intrinsics[:, 0, 2] = (intrinsics[:, 0, 2] + 0.5) * sx - 0.5
        intrinsics[:, 1, 2] = (intrinsics[:, 1, 2] + 0.5) * sy - 0.5
    return frames, depth, intrinsics


class VideoQADataset(torch.utils.data.Dataset):
    """Samples of a VSI-format jsonl (see the module docstring)."""

    def __init__(self, config: VideoQAConfig):
        self.config = config
        records = load_records(config.annotations)
        if config.question_types is not None:
            records = [r for r in records if r["question_type"] in set(config.question_types)]
        self.records = records[: config.limit] if config.limit else records
        self.video_root = Path(config.video_root)

    def __len__(self) -> int:
        return len(self.records)

    def video_path(self, rec: dict) -> Path:
        """The video of ``rec``; raises :class:`DataError` listing the paths tried."""
        name = f"{rec['scene_name']}.mp4"
        tried = [self.video_root / name]
        if rec.get("dataset"):
            tried.append(self.video_root / str(rec["dataset"]) / name)
        for p in tried:
            if p.is_file():
                return p
        raise DataError(f"video not found for scene {rec['scene_name']!r}: tried {', '.join(map(str, tried))}")

    def pixel_key(self, index: int) -> str:
        """Identity of sample ``index``'s frames without decoding (see ``pixel_key`` in
        :mod:`geovr.data.collate`): the video (resolved path, size, modification time), the frame sampling
        (``num_frames``, uniform) and the resize (``image_size``); with ``geometry_root`` also the geometry
        file's identity. Questions on the same video share it."""
        import json

        rec = self.records[index]
        path = self.video_path(rec).resolve()
        st = path.stat()
        ident = {
            "video": str(path),
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "num_frames": self.config.num_frames,
            "sampling": "uniform",
            "image_size": None if self.config.image_size is None else list(self.config.image_size),
        }
        if self.config.geometry_root:
            geo = (Path(self.config.geometry_root) / f"{rec['scene_name']}.safetensors").resolve()
            if geo.is_file():
                ident["geometry"] = [str(geo), geo.stat().st_size, geo.stat().st_mtime_ns]
        return "video_qa:" + json.dumps(ident, sort_keys=True, separators=(",", ":"))

    def _geometry(self, rec: dict, indices: torch.Tensor) -> dict:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        assert self.config.geometry_root is not None  # only called with a geometry_root
        path = Path(self.config.geometry_root) / f"{rec['scene_name']}.safetensors"
        if not path.is_file():
            raise DataError(f"geometry file not found: {path}")
        try:
            geo = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(f"cannot read geometry file {path}: {exc}") from exc
        missing = [k for k in ("depth", "intrinsics", "extrinsics") if k not in geo]
        if missing:
            raise DataError(f"geometry file {path} lacks {missing}")
        if int(indices.max()) >= geo["depth"].shape[0]:
            raise DataError(f"geometry file {path} has {geo['depth'].shape[0]} frames; need index {int(indices.max())}")
        return {k: geo[k][indices].float() for k in ("depth", "intrinsics", "extrinsics")}

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        frames, idx, times = read_video_timed(self.video_path(rec), num_frames=self.config.num_frames)
        geo = self._geometry(rec, idx) if self.config.geometry_root else {}
        if self.config.image_size is not None:
            frames, depth, K = resize_sample(
                frames, tuple(self.config.image_size), geo.get("depth"), geo.get("intrinsics")
            )
            if geo:
                geo.update(depth=depth, intrinsics=K)
        return {
            "frames": frames,
            "frame_indices": idx,
            "frame_times": times,
            "question": rec["question"],
            "options": rec.get("options"),
            "answer": str(rec["ground_truth"]),
            "question_type": rec["question_type"],
            "scene_id": str(rec["scene_name"]),
            "sample_id": f"{rec['scene_name']}:{rec['id']}",
            "pixel_key": self.pixel_key(index),
            **geo,
        }


def build(config: VideoQAConfig, context: BuildContext | None = None) -> VideoQADataset:
    """Factory of the ``video_qa`` dataset component."""
    return VideoQADataset(config)
