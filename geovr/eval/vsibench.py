"""VSI-Bench: record format, per-task scoring under both protocols, and loading the test set.

A *doc* (one VSI-Bench record) is a mapping with ``id``, ``dataset`` (``"scannet"``, ``"arkitscenes"``,
``"scannetpp"``), ``scene_name``, ``question_type``, ``question``, ``options`` (list of ``"A. …"``
strings, or ``None`` for numerical questions) and ``ground_truth`` (a letter, or a number as text).
Its video is ``{data_dir}/{dataset}/{scene_name}.mp4`` (see :func:`video_path` for other layouts).

Question types map to the 8 reported tasks; the relative-direction task has three levels
(``object_rel_direction_easy|medium|hard``): lmms-eval averages the three level accuracies, the geovr
protocol pools their questions. ``overall``: lmms-eval averages the tasks present, the geovr protocol
divides the sum of the 8 task scores by 8 (an absent task counts 0), as the released scorer does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from geovr.data.jsonl import check_fields, iter_jsonl, positive_number
from geovr.errors import DataError
from geovr.eval.metrics import Protocol, check_protocol, score_answer

#: Report order of the 8 tasks (``overall`` = mean of these).
TASKS: tuple[str, ...] = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction",
    "route_planning",
    "obj_appearance_order",
)
NUMERICAL_TASKS = frozenset(
    {"object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation"}
)
CHOICE_TASKS = frozenset(TASKS) - NUMERICAL_TASKS
DIRECTION_LEVELS = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard")
QUESTION_TYPES = frozenset(TASKS) - {"object_rel_direction"} | set(DIRECTION_LEVELS)
DOC_KEYS = ("id", "dataset", "scene_name", "question_type", "question", "options", "ground_truth")
#: Field rules of a doc (:data:`geovr.data.jsonl.FIELD_RULES`).
DOC_FIELDS = {
    "id": "id",
    "dataset": "str",
    "scene_name": "id",
    "question_type": "str",
    "question": "str",
    "options": "options",
    "ground_truth": "answer",
}


def task_of(question_type: str) -> str:
    """Task key of a question type (the direction levels fold into ``object_rel_direction``)."""
    if question_type in DIRECTION_LEVELS:
        return "object_rel_direction"
    if question_type not in QUESTION_TYPES:
        raise DataError(
            f"unknown VSI-Bench question_type {question_type!r}; expected one of {', '.join(sorted(QUESTION_TYPES))}"
        )
    return question_type


def is_multiple_choice(question_type: str) -> bool:
    """True for the multiple-choice question types (scored by accuracy), False for numerical (MRA)."""
    return task_of(question_type) in CHOICE_TASKS


def score_question(doc: Mapping, response: str, *, protocol: Protocol) -> tuple[object, float]:
    """``(parsed answer, score in [0, 1])`` of one raw ``response`` to ``doc``."""
    return score_answer(
        response, doc["ground_truth"], multiple_choice=is_multiple_choice(doc["question_type"]), protocol=protocol
    )


def aggregate(question_types: Sequence[str], scores: Sequence[float], *, protocol: Protocol) -> dict[str, float]:
    """Per-task scores (0–100) and ``overall`` from per-question scores in [0, 1].

    Each task score is the mean of its questions. ``lmms-eval``: the direction task is the mean of its
    three level means; a task without questions is ``nan`` and left out of ``overall`` (the mean of the
    tasks present, i.e. of all 8 on the full set). ``geovr`` (the released scorer): the direction levels'
    questions are pooled; a task without questions scores 0 and ``overall`` is the sum of the 8 task
    scores divided by 8 whatever is present (so a subset of tasks lowers it).
    """
    check_protocol(protocol)
    groups: dict[str, list[float]] = {}
    for qt, s in zip(question_types, scores, strict=True):
        key = qt if protocol == "lmms-eval" and qt in DIRECTION_LEVELS else task_of(qt)
        groups.setdefault(key, []).append(float(s))
    means = {k: sum(v) / len(v) for k, v in groups.items()}
    if protocol == "geovr":
        fractions = {t: means.get(t, 0.0) for t in TASKS}
        out = {t: 100.0 * f for t, f in fractions.items()}
        out["overall"] = 100.0 * (sum(fractions.values()) / len(TASKS))
        return out
    levels = [means.pop(lv) for lv in DIRECTION_LEVELS if lv in means]
    if levels:
        means["object_rel_direction"] = sum(levels) / len(levels)
    out = {t: 100.0 * means[t] if t in means else math.nan for t in TASKS}
    present = [out[t] for t in TASKS if t in means]
    out["overall"] = sum(present) / len(present) if present else math.nan
    return out


def score(docs: Sequence[Mapping], predictions: Sequence[str], *, protocol: Protocol) -> dict[str, float]:
    """Score raw model outputs ``predictions`` (one per doc) under ``protocol``.

    Returns ``{task: score}`` for the 8 :data:`TASKS` plus ``overall``, on a 0–100 scale (a task with no
    questions is ``nan`` under lmms-eval and 0 under the geovr protocol; see :func:`aggregate`).
    """
    if len(docs) != len(predictions):
        raise ValueError(f"score(): {len(docs)} docs but {len(predictions)} predictions")
    for i, p in enumerate(predictions):
        if not isinstance(p, str):
            raise DataError(
                f"score(): prediction {i} (doc {docs[i].get('id')!r}) must be a string, got {type(p).__name__} {p!r}"
            )
    per_question = [score_question(d, p, protocol=protocol)[1] for d, p in zip(docs, predictions, strict=False)]
    return aggregate([d["question_type"] for d in docs], per_question, protocol=protocol)


def task_counts(question_types: Sequence[str]) -> dict[str, int]:
    """Number of questions per task (0 for absent tasks)."""
    counts = dict.fromkeys(TASKS, 0)
    for qt in question_types:
        counts[task_of(qt)] += 1
    return counts


# -- loading --------------------------------------------------------------------------------------


def _normalise(rec: Mapping, where: str) -> dict:
    """Check one record's fields and types (errors name ``where``) and return it as a doc."""
    missing = [k for k in DOC_KEYS if k not in rec]
    if missing:
        raise DataError(f"{where}: record lacks {', '.join(missing)} (a VSI-Bench record has {', '.join(DOC_KEYS)})")
    doc = dict(rec)
    opts = doc["options"]
    if opts is not None and not isinstance(opts, (list, str, dict)) and hasattr(opts, "__iter__"):
        doc["options"] = [str(o) if isinstance(o, str) else o for o in opts]  # parquet gives numpy arrays
    check_fields(doc, where, DOC_FIELDS)
    try:
        choice = is_multiple_choice(doc["question_type"])
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    if choice and not doc["options"]:
        raise DataError(f"{where}: multiple-choice question {doc['id']!r} ({doc['question_type']}) has no options")
    if choice and not isinstance(doc["ground_truth"], str):
        raise DataError(
            f"{where}: 'ground_truth' of a multiple-choice question must be an option letter (a string), "
            f"got {doc['ground_truth']!r}"
        )
    if not choice:
        positive_number(doc["ground_truth"], where)
    doc["id"] = str(doc["id"])
    doc["scene_name"] = str(doc["scene_name"])
    doc["ground_truth"] = str(doc["ground_truth"])
    return doc


def _read_jsonl(path: Path) -> list[dict]:
    return [_normalise(rec, where) for where, rec in iter_jsonl(path)]


def _read_parquet(paths: Sequence[Path]) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(
            f"{paths[0]}: reading parquet needs pyarrow (pip install pyarrow), or convert the records to test.jsonl"
        ) from exc
    docs = []
    for path in paths:
        for i, rec in enumerate(pq.read_table(path).to_pylist()):
            docs.append(_normalise(rec, f"{path}[{i}]"))
    return docs


def load_docs(data_dir: str | Path, records: str | None = None) -> list[dict]:
    """Read the VSI-Bench records of ``data_dir``.

    ``records``: a ``.jsonl`` or ``.parquet`` file (relative to ``data_dir`` or absolute). Without it:
    ``test.jsonl``, else the ``*.parquet`` files below ``data_dir`` when they all sit in one directory
    (parquet needs ``pyarrow``). Raises :class:`DataError` naming the path when nothing (or an ambiguous
    set of files) is found or a record is malformed.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(
            f"{root}: VSI-Bench data directory not found (expected test.jsonl or *.parquet and "
            f"{{dataset}}/{{scene_name}}.mp4 videos)"
        )
    if records is not None:
        path = Path(records) if Path(records).is_absolute() else root / records
        if not path.is_file():
            raise DataError(f"{path}: records file not found")
        return _read_parquet([path]) if path.suffix == ".parquet" else _read_jsonl(path)
    if (root / "test.jsonl").is_file():
        return _read_jsonl(root / "test.jsonl")
    parquets = sorted(root.rglob("*.parquet"))
    if not parquets:
        raise DataError(f"{root}: neither test.jsonl nor any *.parquet file found")
    dirs = sorted({p.parent for p in parquets})
    if len(dirs) > 1:
        raise DataError(
            f"{root}: parquet files in {len(dirs)} directories ({', '.join(str(d) for d in dirs[:4])}); "
            f'choose one with the evaluator option records = "<file>"'
        )
    return _read_parquet(parquets)


def video_path(data_dir: str | Path, doc: Mapping, video_dir: str | None = None) -> Path:
    """The video of a doc: ``{data_dir}/{dataset}/{scene_name}.mp4`` (VSI-Bench layout). With
    ``video_dir`` (relative to ``data_dir``) videos are looked up under it, as
    ``{dataset}/{scene_name}.mp4`` or ``{scene_name}.mp4`` (the layout ``geovr data synth`` writes).
    Existence is checked when the video is read (or by :func:`missing_videos`)."""
    root = Path(data_dir) / video_dir if video_dir else Path(data_dir)
    nested = root / str(doc["dataset"]) / f"{doc['scene_name']}.mp4"
    if video_dir is None or nested.is_file():
        return nested
    flat = root / f"{doc['scene_name']}.mp4"
    return flat if flat.is_file() else nested


def missing_videos(data_dir: str | Path, docs: Sequence[Mapping], video_dir: str | None = None) -> list[Path]:
    """Sorted unique video paths referenced by ``docs`` that do not exist."""
    return sorted({p for d in docs if not (p := video_path(data_dir, d, video_dir)).is_file()})
