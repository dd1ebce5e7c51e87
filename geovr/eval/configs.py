"""Recipe options of the evaluators (torch-free): ``[[evaluators]]`` tables validate into these.

Shared question-answering options (``vsibench`` and ``synthetic_qa``):

* ``protocol``: ``"lmms-eval"`` (greedy decoding, lmms-eval 0.7.x prompts/parsing, MRA with ``<=``)
  or ``"geovr"`` (sampling, the method's prompts/parsing, MRA with ``<``); see :mod:`geovr.eval.metrics`.
* ``max_new_tokens``: generation length (``None`` = 16, the lmms-eval task's value, for both protocols).
* ``temperature``, ``top_p``, ``top_k``: sampling options, used by the ``geovr`` protocol only;
  ``seed`` (``None`` = the recipe seed) seeds each batch from the seed and the batch's first question id,
  so resumed or sharded runs draw the same samples.
* ``limit``: evaluate only the first N questions (``None`` = all); ``batch_size`` questions per
  ``generate`` call; ``question_types``: keep only these VSI-Bench question types.
* ``frame_size``: ``[H, W]`` frames are resized to before the backbone (``None`` = as decoded).
* ``output_subdir``: directory under the evaluation directory (default ``<evaluator>-<protocol>``);
  ``compare``: another run's ``results.json`` (or directory) drawn beside this one in the bar chart.
* ``progress``: show a tqdm bar.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs

from geovr.recipe.preflight import missing_path

PROTOCOL_CHOICES = ("lmms-eval", "geovr")

#: Frames per VSI-Bench video when ``num_frames`` is not given: 32 under lmms-eval (the frame count
#: geovr has always used with it), 128 under the geovr protocol (the released evaluation script's
#: ``NUM_FRAME``, uniformly sampled).
PUBLISHED_NUM_FRAMES = {"lmms-eval": 32, "geovr": 128}


def _qa_problems(c) -> list[str]:
    problems = []
    if c.batch_size < 1:
        problems.append(f"batch_size must be >= 1, got {c.batch_size}")
    if c.limit is not None and c.limit < 0:
        problems.append(f"limit must be >= 0 (or omitted for all questions), got {c.limit}")
    if c.max_new_tokens is not None and c.max_new_tokens < 1:
        problems.append(f"max_new_tokens must be >= 1, got {c.max_new_tokens}")
    if c.temperature <= 0:
        problems.append(f"temperature must be > 0, got {c.temperature}")
    if not 0 < c.top_p <= 1:
        problems.append(f"top_p must be in (0, 1], got {c.top_p}")
    if c.top_k < 0:
        problems.append(f"top_k must be >= 0, got {c.top_k}")
    if c.frame_size is not None and (len(c.frame_size) != 2 or min(c.frame_size) <= 0):
        problems.append(f"frame_size must be [H, W] with positive ints, got {c.frame_size}")
    if c.question_types is not None:
        from geovr.eval.vsibench import QUESTION_TYPES

        bad = sorted(set(c.question_types) - QUESTION_TYPES)
        if bad:
            problems.append(f"question_types: unknown {bad}; valid: {sorted(QUESTION_TYPES)}")
    return problems


@attrs.define
class _QAOptions:
    protocol: Literal["lmms-eval", "geovr"] = "lmms-eval"
    max_new_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    seed: int | None = None
    limit: int | None = None
    batch_size: int = 1
    question_types: list[str] | None = None
    frame_size: list[int] | None = None
    output_subdir: str | None = None
    compare: str | None = None
    progress: bool = True

    def check(self) -> list[str]:
        """Cross-field rules (the recipe validator lists them with the ``evaluators.<i>`` prefix)."""
        return _qa_problems(self)


@attrs.define
class VSIBenchConfig(_QAOptions):
    """``component = "vsibench"``: the VSI-Bench test set in a local directory.

    ``data_dir`` holds ``test.jsonl`` (or ``*.parquet``) and the videos ``{dataset}/{scene_name}.mp4``;
    ``num_frames`` frames are sampled uniformly from each video; unset, it is the protocol's published
    count (:data:`PUBLISHED_NUM_FRAMES`: 32 for ``"lmms-eval"``, 128 for ``"geovr"``), filled in when the
    config is built. The backbone must accept that many (e.g. ``backbone.max_frames = 128``).
    ``records``: the record file to read (``.jsonl`` or ``.parquet``, relative to ``data_dir``) when the
    default (``test.jsonl``, else the one directory of ``*.parquet`` files) is not wanted;
    ``video_dir``: a sub-directory holding the videos as ``{dataset}/{scene}.mp4`` or ``{scene}.mp4``
    (e.g. ``geovr data synth`` output: ``records = "qa.jsonl"``, ``video_dir = "videos"``).
    Plus the shared QA options of this module.
    """

    data_dir: str = attrs.field(kw_only=True)
    num_frames: int | None = None
    records: str | None = None
    video_dir: str | None = None

    def __attrs_post_init__(self):
        if self.num_frames is None:
            self.num_frames = PUBLISHED_NUM_FRAMES.get(self.protocol, PUBLISHED_NUM_FRAMES["lmms-eval"])

    def preflight(self) -> list[str]:
        """The VSI-Bench directory must exist on this machine."""
        return missing_path(self.data_dir, "data_dir", kind="dir")

    def check(self) -> list[str]:
        problems = _qa_problems(self)
        if not self.data_dir:
            problems.append(
                "data_dir must name the VSI-Bench directory (test.jsonl + {dataset}/{scene}.mp4), "
                'e.g. data_dir = "data/vsibench"'
            )
        if self.num_frames is not None and self.num_frames < 1:  # None only before __attrs_post_init__
            problems.append(f"num_frames must be >= 1, got {self.num_frames}")
        return problems


#: Options given to ``synthetic_rooms`` by ``synthetic_qa`` unless its ``dataset_options`` say otherwise: a
#: seed no shipped training recipe uses (held-out scenes) and no ground-truth geometry (not needed).
SYNTHETIC_QA_DEFAULTS = {"num_samples": 64, "num_frames": 8, "seed": 12345, "with_geometry": False}


@attrs.define
class SyntheticQAConfig(_QAOptions):
    """``component = "synthetic_qa"``: VSI-format questions about held-out scenes of the embedded
    synthetic world (no download needed).

    ``dataset``: the registered dataset producing the question samples (default ``"synthetic_rooms"``,
    whose samples carry VSI-Bench question types); ``dataset_options``: its recipe options, laid over
    :data:`SYNTHETIC_QA_DEFAULTS` for ``synthetic_rooms`` (e.g. ``{num_samples = 200, num_frames = 16}``).
    Plus the shared QA options of this module.
    """

    dataset: str = "synthetic_rooms"
    dataset_options: dict = attrs.field(factory=dict)

    def options(self) -> dict:
        """The dataset options actually used (defaults applied)."""
        base = dict(SYNTHETIC_QA_DEFAULTS) if self.dataset == "synthetic_rooms" else {}
        return {**base, **self.dataset_options}


@attrs.define
class GeometryProbeConfig:
    """``component = "geometry_probe"``: linear probes of 3D content in the frozen student.

    ``layers``: hidden-state indices whose visual-token grids are probed for per-patch depth
    (``[]`` = about a quarter, half, three quarters and all of the LLM depth). ``camera_tokens``:
    probe the camera-token states for relative rotation (when the backbone exposes them); ``false`` probes
    the student as deployed, with no extra tokens: the frame-mean of the visual tokens of each probed
    layer, the layer chosen by cross-validation on the training scenes (also the fallback when the
    backbone has no camera tokens). ``dataset`` / ``dataset_options``: the registered
    dataset with ground-truth depth and extrinsics (default ``"synthetic_rooms"``); ``num_samples``
    videos are used; their scenes are split, the first ``train_fraction`` of the scenes to fit and the rest
    to score. ``ridge``: regularisation λ (relative to the number of rows, on standardised features): a
    number, a list to choose from, or ``None`` for the default grid (1e-4 … 1e3 and ``inf`` = constant),
    chosen by ``cv_folds``-fold cross-validation grouped by scene on the training scenes.
    ``batch_size`` videos per forward.
    ``output_subdir`` (default ``geometry_probe``) receives ``probe.json``, ``probe.md``, ``probe.png``.
    """

    layers: list[int] = attrs.field(factory=list)
    camera_tokens: bool = True
    dataset: str = "synthetic_rooms"
    dataset_options: dict = attrs.field(factory=dict)
    num_samples: int = 8
    train_fraction: float = 0.75
    ridge: float | list[float] | None = None
    cv_folds: int = 5
    batch_size: int = 1
    output_subdir: str | None = None
    progress: bool = True

    def options(self) -> dict:
        """The dataset options actually used: for ``synthetic_rooms`` held-out scenes (seed 12345),
        ``num_samples`` videos and ground truth on, under ``dataset_options``."""
        base = (
            {"num_samples": self.num_samples, "seed": 12345, "with_geometry": True}
            if self.dataset == "synthetic_rooms"
            else {}
        )
        return {**base, **self.dataset_options}

    def check(self) -> list[str]:
        """Cross-field rules."""
        problems = []
        if self.num_samples < 2:
            problems.append(f"num_samples must be >= 2 (fit and held-out videos), got {self.num_samples}")
        if not 0 < self.train_fraction < 1:
            problems.append(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        ridges = [] if self.ridge is None else [self.ridge] if isinstance(self.ridge, (int, float)) else self.ridge
        if any(r < 0 for r in ridges) or (self.ridge is not None and not ridges):
            problems.append(f"ridge must be a number >= 0, a non-empty list of them, or omitted; got {self.ridge}")
        if self.cv_folds < 2:
            problems.append(f"cv_folds must be >= 2, got {self.cv_folds}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if any(layer < 0 for layer in self.layers):
            problems.append(f"layers must be hidden-state indices >= 0, got {self.layers}")
        return problems


@attrs.define
class EvaluateCallbackConfig:
    """``[[callbacks]] component = "evaluate"``: run the recipe's ``[[evaluators]]`` while training.

    ``every``: also evaluate after every N optimizer steps (0 = never); ``at_end``: evaluate when training
    ends. Each evaluation goes to ``RUN_DIR/eval/step-<step>`` (8-digit step).

    ``uses_evaluators`` (a class variable, not an option) tells :func:`geovr.train.runner.train` to build
    the recipe's evaluators for this callback.
    """

    uses_evaluators: ClassVar[bool] = True
    every: int = 0
    at_end: bool = True

    def check(self) -> list[str]:
        """Cross-field rules."""
        return [f"every must be >= 0, got {self.every}"] if self.every < 0 else []
