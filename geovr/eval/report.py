"""Evaluation outputs: per-question JSONL, per-task tables (markdown + JSON) and bar charts.

Files an evaluator writes into its output directory::

    predictions.jsonl   one row per question: id, question_type, task, prompt, response, parsed,
                        ground_truth, score (0–1)
    results.json        {"evaluator", "protocol", "scores": {task: 0–100 | null}, "tasks": [{task, n, score,
                        chance}], "multiple_choice": {n, score, chance}, "higher_is_better": true}
    results.md          the same table in markdown (question counts, chance level, direction)
    results.png         bar chart of per-task scores (side by side with ``compare`` when given)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from geovr.errors import DataError

if TYPE_CHECKING:
    from geovr.eval.metrics import Protocol


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file (missing file → ``[]``; a truncated last line, e.g. after a crash, is dropped)."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    lines = p.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break
            raise DataError(f"{p}:{i + 1}: invalid JSON ({exc})") from exc
    return rows


def append_jsonl(path: str | Path, rows: Iterable[Mapping]) -> None:
    """Append rows to a JSONL file and flush them to disk (so an interrupted run can resume). A partial
    last line left by a crash is cut off first, so new rows never join it."""
    p = Path(path)
    if p.is_file() and p.stat().st_size:
        with open(p, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)
    with open(p, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def task_table(scores: Mapping[str, float], counts: Mapping[str, int]) -> list[dict]:
    """``[{task, n, score}]`` in report order, ``overall`` last (score ``None`` when no questions)."""
    rows = [{"task": t, "n": int(counts.get(t, 0)), "score": _num(scores.get(t))} for t in counts]
    rows.append({"task": "overall", "n": int(sum(counts.values())), "score": _num(scores.get("overall"))})
    return rows


def markdown_table(rows: Sequence[Mapping], *, title: str | None = None) -> str:
    """A markdown table of :func:`task_table` rows (scores with two decimals, ``–`` when absent; a
    ``chance`` column when the rows carry one)."""
    lines = [f"## {title}", ""] if title else []
    with_chance = any("chance" in r for r in rows)
    if with_chance:
        lines += ["| task | n | score (0–100, higher is better) | chance |", "|---|---:|---:|---:|"]
    else:
        lines += ["| task | n | score (0–100, higher is better) |", "|---|---:|---:|"]
    for r in rows:
        s = "–" if r["score"] is None else f"{r['score']:.2f}"
        line = f"| {r['task']} | {r['n']} | {s} |"
        if with_chance:
            line += " – |" if r.get("chance") is None else f" {r['chance']:.2f} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def chance_levels(docs: Sequence[Mapping], *, protocol: Protocol) -> dict[str, float | None]:
    """Chance level (0–100) per task, aggregated like the scores (uniform guessing among a question's
    options); ``None`` for numerical tasks (scored by relative accuracy: no chance level) and
    ``overall`` unless every task present is multiple-choice."""
    from geovr.eval.vsibench import aggregate, is_multiple_choice, task_of

    mc = [d for d in docs if is_multiple_choice(d["question_type"]) and d.get("options")]
    out: dict[str, float | None] = {task_of(d["question_type"]): None for d in docs}
    if mc:
        agg = aggregate([d["question_type"] for d in mc], [1.0 / len(d["options"]) for d in mc], protocol=protocol)
        out.update({t: v for t, v in agg.items() if t in out and v == v})
    out["overall"] = agg["overall"] if mc and all(v is not None for v in out.values()) else None
    return out


def annotate_results(output_dir: str | Path, docs: Sequence[Mapping], *, protocol: Protocol) -> dict:
    """Add chance levels, the multiple-choice accuracy over all choice questions (with its chance
    level) and the direction to the ``results.json``/``results.md`` in ``output_dir``; returns the doc."""
    from geovr.eval.vsibench import is_multiple_choice

    out = Path(output_dir)
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    chance = chance_levels(docs, protocol=protocol)
    for row in doc["tasks"]:
        row["chance"] = chance.get(row["task"])
    by_id = {str(d["id"]): d for d in docs}
    rows = [r for r in read_jsonl(out / "predictions.jsonl") if str(r.get("id")) in by_id]
    mc = [(r, by_id[str(r["id"])]) for r in rows if is_multiple_choice(r["question_type"])]
    if mc:
        doc["multiple_choice"] = {
            "n": len(mc),
            "score": 100.0 * sum(float(r["score"]) for r, _ in mc) / len(mc),
            "chance": 100.0 * sum(1.0 / len(d["options"]) for _, d in mc if d.get("options")) / len(mc),
        }
    doc["higher_is_better"] = True
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    title = f"{doc['evaluator']}" + (f" ({doc['protocol']} protocol)" if "protocol" in doc else "")
    text = markdown_table(doc["tasks"], title=title)
    if mc:
        m = doc["multiple_choice"]
        text += (
            f"\nmultiple-choice questions: {m['n']}, accuracy {m['score']:.2f} (chance {m['chance']:.2f}); "
            f"numerical tasks are scored by mean relative accuracy (no chance level).\n"
        )
    (out / "results.md").write_text(text, encoding="utf-8")
    return doc


def write_results(
    output_dir: str | Path,
    *,
    evaluator: str,
    scores: Mapping[str, float],
    counts: Mapping[str, int],
    extra: Mapping | None = None,
    compare: str | Path | None = None,
) -> dict:
    """Write ``results.json``, ``results.md`` and ``results.png`` (see the module docstring).

    ``compare``: another run's ``results.json`` (or its directory) drawn beside this one in the chart.
    Returns the JSON document written.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = task_table(scores, counts)
    doc = {
        "evaluator": evaluator,
        **dict(extra or {}),
        "scores": {k: _num(v) for k, v in scores.items()},
        "tasks": rows,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    title = f"{evaluator}" + (f" ({extra['protocol']} protocol)" if extra and "protocol" in extra else "")
    (out / "results.md").write_text(markdown_table(rows, title=title), encoding="utf-8")
    series = {_label(out): {r["task"]: r["score"] for r in rows}}
    if compare is not None:
        other = load_results(compare)
        label = other["label"]
        if label in series:  # e.g. two runs' default eval/vsibench-lmms-eval directories
            mine = next(iter(series))
            series = {_label(out, 3): series[mine]}
            label = _label(Path(other["path"]).parent, 3)
        series[label] = {r["task"]: r["score"] for r in other["tasks"]}
    bar_chart(series, out / "results.png", title=title, ylabel="score (0-100)")
    return doc


def load_results(path: str | Path) -> dict:
    """Read a ``results.json`` (``path`` may be its directory); the result gains ``label`` (its directory
    name) and ``path``."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise DataError(f"{p}: results.json not found (pass a results.json or the directory holding it)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: invalid JSON ({exc})") from exc
    if "tasks" not in doc:
        raise DataError(f"{p}: not a geovr results.json (no 'tasks' table)")
    doc.setdefault("label", _label(p.parent))
    doc["path"] = str(p)
    return doc


def _label(directory: Path, parts: int = 1) -> str:
    """Chart label of a results directory: its last ``parts`` path components."""
    comps = Path(directory).resolve().parts
    return "/".join(comps[-parts:]) if comps else str(directory)


def bar_chart(
    series: Mapping[str, Mapping[str, float | None]],
    path: str | Path,
    *,
    title: str = "",
    ylabel: str = "",
    fmt: str = "%.1f",
) -> Path | None:
    """Grouped bar chart: categories = keys of the first series, one bar per series (missing → no bar);
    ``fmt`` formats the value printed on each bar.

    Returns the PNG path, or ``None`` (with a warning) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        import warnings

        warnings.warn("matplotlib is not installed; skipping the chart (pip install matplotlib)", stacklevel=2)
        return None
    names = list(series)
    cats = list(next(iter(series.values())))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(cats) + 2), 4.2))
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(cats))]
        ys = [series[name].get(c) for c in cats]
        bars = ax.bar(
            [x for x, y in zip(xs, ys, strict=False) if y is not None],
            [y for y in ys if y is not None],
            width,
            label=name,
        )
        ax.bar_label(bars, fmt=fmt, fontsize=7)
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels(cats, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    top = max([v for ser in series.values() for v in ser.values() if v is not None] or [1.0])
    ax.set_ylim(0, top * (1.3 if len(names) > 1 else 1.12) or 1.0)
    if len(names) > 1:
        ax.legend(fontsize=8, loc="upper left", ncol=len(names))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
