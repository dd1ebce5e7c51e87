"""Evaluation outputs: per-question JSONL, per-task tables (markdown + JSON) and bar charts.

Files an evaluator writes into its output directory::

    predictions.jsonl   one row per question: id, question_type, task, prompt, response, parsed,
                        ground_truth, score (0–1)
    results.json        {"evaluator", "protocol", "scores": {task: 0–100 | null}, "tasks": [{task, n, score}]}
    results.md          the same table in markdown
    results.png         bar chart of per-task scores (side by side with ``compare`` when given)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from geovr.errors import DataError


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
    """A markdown table of :func:`task_table` rows (scores with two decimals, ``–`` when absent)."""
    lines = [f"## {title}", ""] if title else []
    lines += ["| task | n | score |", "|---|---:|---:|"]
    for r in rows:
        s = "–" if r["score"] is None else f"{r['score']:.2f}"
        lines.append(f"| {r['task']} | {r['n']} | {s} |")
    return "\n".join(lines) + "\n"


def write_results(output_dir: str | Path, *, evaluator: str, scores: Mapping[str, float],
                  counts: Mapping[str, int], extra: Mapping | None = None,
                  compare: str | Path | None = None) -> dict:
    """Write ``results.json``, ``results.md`` and ``results.png`` (see the module docstring).

    ``compare``: another run's ``results.json`` (or its directory) drawn beside this one in the chart.
    Returns the JSON document written.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = task_table(scores, counts)
    doc = {"evaluator": evaluator, **dict(extra or {}), "scores": {k: _num(v) for k, v in scores.items()},
           "tasks": rows}
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


def bar_chart(series: Mapping[str, Mapping[str, float | None]], path: str | Path, *, title: str = "",
              ylabel: str = "", fmt: str = "%.1f") -> Path | None:
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
        bars = ax.bar([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None], width,
                      label=name)
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
