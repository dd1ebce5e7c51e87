"""The ``vsibench`` and ``synthetic_qa`` evaluators (factories ``factory(config, context)``).

Both return an object with ``evaluate(backbone, output_dir) -> dict[str, float]`` that writes its
reports under ``output_dir / <output_subdir>`` (default ``<evaluator>-<protocol>``) and returns
the per-task scores (0–100; tasks without questions omitted) plus ``overall``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from geovr.errors import DataError
from geovr.eval.qa import finite, generation_kwargs, run_qa
from geovr.eval.vsibench import load_docs, missing_videos, video_path

if TYPE_CHECKING:
    from geovr.protocols import BuildContext


class _QAEvaluator:
    """Shared part of the QA evaluators: decoding options, output directory, selection, the run.

    Subclasses provide :meth:`docs` (VSI-format records) and :meth:`load_frames` (``doc ->
    ([S,3,H,W] float32 in [0,1], [S] int64)``), and may add run metadata in :meth:`info`.
    """

    name = "qa"

    def __init__(self, config, context: BuildContext):
        self.config = config
        self.seed = config.seed if config.seed is not None else int(getattr(context, "seed", 0) or 0)

    @property
    def generation(self) -> dict:
        """The decoding options passed to ``backbone.generate``."""
        c = self.config
        return generation_kwargs(
            c.protocol, max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p, top_k=c.top_k
        )

    def output_path(self, output_dir) -> Path:
        """Where this evaluator writes: ``output_dir / (output_subdir or <name>-<protocol>)``."""
        sub = self.config.output_subdir or f"{self.name}-{self.config.protocol}"
        return Path(output_dir or ".") / sub

    def select(self, docs: list[dict]) -> list[dict]:
        """Apply ``question_types`` and ``limit`` (first N in file order)."""
        c = self.config
        if c.question_types is not None:
            keep = set(c.question_types)
            docs = [d for d in docs if d["question_type"] in keep]
        if c.limit is not None:
            docs = docs[: c.limit]
        return docs

    def docs(self) -> list[dict]:  # pragma: no cover - overridden
        raise NotImplementedError

    def load_frames(self, doc: Mapping):  # pragma: no cover - overridden
        raise NotImplementedError

    def info(self) -> dict:
        """Extra fields recorded in ``results.json``."""
        return {}

    def evaluate(self, backbone, output_dir) -> dict[str, float]:
        """Answer every selected question with ``backbone`` and write the reports; returns the scores."""
        c = self.config
        docs = self.docs()
        out = self.output_path(output_dir)
        scores = run_qa(
            backbone,
            docs,
            self.load_frames,
            evaluator=self.name,
            protocol=c.protocol,
            output_dir=out,
            generation=self.generation,
            seed=self.seed,
            batch_size=c.batch_size,
            frame_size=c.frame_size,
            progress=c.progress,
            compare=c.compare,
            extra=self.info(),
        )
        from geovr.eval.probe import _is_main_process
        from geovr.eval.report import annotate_results

        if _is_main_process() and (out / "results.json").is_file():
            annotate_results(out, docs, protocol=c.protocol)  # chance levels, multiple-choice accuracy
        return finite(scores)


class VSIBenchEvaluator(_QAEvaluator):
    """VSI-Bench from a local directory (:class:`geovr.eval.configs.VSIBenchConfig`)."""

    name = "vsibench"

    def __init__(self, config, context: BuildContext):
        super().__init__(config, context)
        self._cache: dict[str, tuple] = {}

    def docs(self) -> list[dict]:
        """The selected records (``question_types``, then the first ``limit`` in file order), grouped by
        video so each video is decoded once; every referenced video must exist (all missing are listed)."""
        docs = self.select(load_docs(self.config.data_dir, self.config.records))
        if not docs:
            raise DataError(f"{self.config.data_dir}: no VSI-Bench questions selected")
        missing = missing_videos(self.config.data_dir, docs, self.config.video_dir)
        if missing:
            shown = ", ".join(str(p) for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DataError(f"{len(missing)} video(s) referenced by {self.config.data_dir} are missing: {shown}")
        first: dict[tuple, int] = {}
        for i, d in enumerate(docs):
            first.setdefault((d["dataset"], d["scene_name"]), i)
        return sorted(docs, key=lambda d: first[(d["dataset"], d["scene_name"])])

    def load_frames(self, doc: Mapping):
        """``num_frames`` uniform frames: ``([S,3,H,W] float32 in [0,1], [S] int64, [S] seconds)``; the last few
        videos stay decoded (questions are asked video by video)."""
        return self._read(str(video_path(self.config.data_dir, doc, self.config.video_dir)))

    def _read(self, path: str):
        from geovr.eval.video import read_frames

        if path not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            from geovr.data.video import video_fps

            frames, idx = read_frames(path, self.config.num_frames)
            self._cache[path] = (frames, idx, idx.double() / video_fps(path))  # + seconds of each frame
        return self._cache[path]

    def info(self) -> dict:
        return {
            "data_dir": str(self.config.data_dir),
            "records": self.config.records,
            "video_dir": self.config.video_dir,
            "num_frames": self.config.num_frames,
        }


class SyntheticQAEvaluator(_QAEvaluator):
    """VSI-format questions on synthetic scenes (:class:`geovr.eval.configs.SyntheticQAConfig`).

    The samples come from a registered dataset (default ``synthetic_rooms``) whose items are the sample
    dicts of :mod:`geovr.data.collate` with VSI-Bench ``question_type`` values; ``answer`` is the ground
    truth. Each sample is read (rendered) once; its frames are kept as uint8 until asked, the precision
    of a decoded video.
    """

    name = "synthetic_qa"

    def __init__(self, config, context: BuildContext):
        super().__init__(config, context)
        self.context = context
        self._frames: dict[str, tuple] = {}

    def dataset(self):
        """The question dataset, built through the registry."""
        from geovr.plugins import get_registry

        spec = get_registry().get("dataset", self.config.dataset)
        return spec.build(self.config.options(), self.context)

    def docs(self) -> list[dict]:
        """VSI-format records of the dataset's samples (frames cached for :meth:`load_frames`)."""
        import torch

        ds = self.dataset()
        docs: list[dict] = []
        keep = set(self.config.question_types or [])
        for i in range(len(ds)):
            if self.config.limit is not None and len(docs) >= self.config.limit:
                break
            s = ds[i]
            if keep and s["question_type"] not in keep:
                continue
            sid = str(s.get("sample_id", i))
            frames = torch.as_tensor(s["frames"]).float().mul(255).round().clamp(0, 255).to(torch.uint8)
            idx = s.get("frame_indices")
            self._frames[sid] = (
                frames,
                torch.as_tensor(idx).long() if idx is not None else torch.arange(frames.shape[0]),
            )
            docs.append(
                {
                    "id": sid,
                    "dataset": self.config.dataset,
                    "scene_name": str(s.get("scene_id", "")),
                    "question_type": s["question_type"],
                    "question": s["question"],
                    "options": s.get("options"),
                    "ground_truth": str(s["answer"]),
                }
            )
        return docs

    def load_frames(self, doc: Mapping):
        """Frames of the sample: ``([S,3,H,W] float32 in [0,1], [S] int64)``."""
        frames, idx = self._frames[doc["id"]]
        return frames.float() / 255.0, idx

    def info(self) -> dict:
        return {"dataset": self.config.dataset, "dataset_options": self.config.options()}


def build_vsibench(config, context: BuildContext) -> VSIBenchEvaluator:
    """Factory of the ``vsibench`` evaluator."""
    return VSIBenchEvaluator(config, context)


def build_synthetic_qa(config, context: BuildContext) -> SyntheticQAEvaluator:
    """Factory of the ``synthetic_qa`` evaluator."""
    return SyntheticQAEvaluator(config, context)
