"""Gather evaluation reports of many runs into one comparison: arms × metrics, mean ± CI (95 % by default) over seeds,
and the paired difference of each arm to a baseline arm (torch-free; numpy + scipy.stats).

A *run report* is the dict :func:`run_report` reads from a run directory: ``{"arm", "seed", "run_dir",
"metrics": {name: value}, "chance": {name: value}}``. Metric names:

* ``qa_overall`` and ``qa_<task>`` — synthetic (or VSI-Bench) QA scores, 0–100, higher is better;
  ``qa_multiple_choice`` — accuracy over all multiple-choice questions (with its chance level);
* ``depth_absrel`` (lower is better), ``depth_delta1`` (higher is better) — the depth probe on held-out
  scenes, with ``*_constant`` (constant baseline) and ``*_control`` (positive control) beside them;
* ``pose_error`` — relative rotation error of the pose probe (camera states, or frame-mean visual
  tokens when the probe runs without camera tokens), degrees, lower is better;
  ``translation_error`` — relative camera-centre error, metres, lower is better.

Statistics: the mean over seeds and the two-sided Student-t interval
``scipy.stats.t.interval(confidence, n − 1, loc=mean, scale=sd/√n)`` (``confidence`` 0.95 unless asked
otherwise, e.g. 0.975 for the second of two looks at the same comparison); the difference to the baseline is
paired by seed (only seeds both arms have), ``arm − baseline``, with the same t interval of the
per-seed differences. With one value, or identical values, the interval is undefined (``None``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from geovr.errors import DataError, UsageError

#: Result file ``geovr ablate`` writes into each run directory.
RESULT_FILE = "ablation-result.json"
#: Headline metrics, in table order, with their direction (True = higher is better) and unit.
HEADLINE = {
    "qa_overall": (True, "score 0–100"),
    "qa_multiple_choice": (True, "accuracy 0–100"),
    "depth_absrel": (False, "AbsRel"),
    "depth_delta1": (True, "δ<1.25"),
    "depth_aligned_absrel": (False, "AbsRel, scale-aligned"),
    "pose_error": (False, "degrees"),
    "translation_error": (False, "metres"),
}


def higher_is_better(metric: str) -> bool:
    """Direction of a metric: QA scores and δ<1.25 up, errors and AbsRel down."""
    if metric in HEADLINE:
        return HEADLINE[metric][0]
    return metric.startswith("qa_") or "delta1" in metric


def direction_word(metric: str) -> str:
    return "higher is better" if higher_is_better(metric) else "lower is better"


# -- reading run reports ---------------------------------------------------------------------------------


def metrics_from_eval(eval_dir: str | Path) -> tuple[dict[str, float], dict[str, float]]:
    """``(metrics, chance)`` from an evaluation directory written by ``geovr eval`` (``*/results.json``
    of the QA evaluators and ``*/probe.json`` of ``geometry_probe``). QA tasks become ``qa_<task>``;
    when several QA evaluators wrote reports, the first (sorted by directory name) gives ``qa_*``."""
    d = Path(eval_dir)
    metrics: dict[str, float] = {}
    chance: dict[str, float] = {}
    for res in sorted(d.glob("*/results.json")):
        doc = json.loads(res.read_text(encoding="utf-8"))
        for row in doc.get("tasks", []):
            key = f"qa_{row['task']}"
            if row.get("score") is not None and key not in metrics:
                metrics[key] = float(row["score"])
                if row.get("chance") is not None:
                    chance[key] = float(row["chance"])
        mc = doc.get("multiple_choice")
        if mc and "qa_multiple_choice" not in metrics:
            metrics["qa_multiple_choice"] = float(mc["score"])
            chance["qa_multiple_choice"] = float(mc["chance"])
    for probe in sorted(d.glob("*/probe.json")):
        doc = json.loads(probe.read_text(encoding="utf-8"))
        for k, v in doc.get("results", {}).items():
            if isinstance(v, (int, float)) and math.isfinite(v) and k not in metrics:
                metrics[k] = float(v)
    if not metrics:
        raise DataError(f"{d}: no evaluation reports (*/results.json or */probe.json) found")
    return metrics, chance


def _recipe_value(run_dir: Path, key: str):
    """Dotted ``key`` of the run's resolved ``recipe.toml`` (``None`` when absent)."""
    import tomllib

    path = run_dir / "recipe.toml"
    if not path.is_file():
        return None
    node = tomllib.loads(path.read_text(encoding="utf-8"))
    for part in key.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def run_report(run_dir: str | Path) -> dict:
    """The report of one run: ``RUN_DIR/ablation-result.json`` when ``geovr ablate`` wrote it, otherwise
    built from the newest ``RUN_DIR/eval/<checkpoint>/`` (or ``RUN_DIR/eval/``) reports with the arm
    taken from the recipe ``name`` and the seed from the recipe ``seed``."""
    d = Path(run_dir)
    res = d / RESULT_FILE
    if res.is_file():
        try:
            doc = json.loads(res.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{res}: invalid JSON ({exc})") from exc
        doc.setdefault("run_dir", str(d))
        return doc
    candidates = sorted((p for p in (d / "eval").glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for cand in reversed([*candidates, d / "eval"]):
        try:
            metrics, chance = metrics_from_eval(cand)
        except DataError:
            continue
        return {
            "arm": str(_recipe_value(d, "name") or d.name),
            "seed": _recipe_value(d, "seed"),
            "run_dir": str(d),
            "metrics": metrics,
            "chance": chance,
        }
    raise DataError(
        f"{d}: not an evaluated run (no {RESULT_FILE} and no eval/*/results.json or probe.json; "
        f"run `geovr eval {d}` first)"
    )


def find_reports(paths: Iterable[str | Path]) -> list[dict]:
    """Reports of every run under ``paths`` (a run directory, or a folder of them such as a
    ``geovr ablate`` output, searched recursively for :data:`RESULT_FILE`)."""
    reports = []
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError(f"{p}: no such run directory")
        if (p / RESULT_FILE).is_file() or (p / "recipe.toml").is_file():
            reports.append(run_report(p))
            continue
        found = sorted(f.parent for f in p.rglob(RESULT_FILE))
        if not found:
            raise UsageError(f"{p}: neither a run directory (recipe.toml) nor a folder holding runs ({RESULT_FILE})")
        reports += [run_report(f) for f in found]
    return reports


def group_reports(reports: Sequence[dict], by: str = "arm") -> dict[str, list[dict]]:
    """Reports grouped by ``by``: a report field (``arm``, ``seed``) or a dotted key of each run's
    ``recipe.toml`` (e.g. ``trainer.lr``)."""
    groups: dict[str, list[dict]] = {}
    for r in reports:
        value = r.get(by) if by in r else _recipe_value(Path(r["run_dir"]), by)
        if value is None:
            raise UsageError(
                f"{r['run_dir']}: no value for --by {by!r} (a report field such as 'arm' or a "
                f"dotted recipe key such as 'trainer.lr')"
            )
        groups.setdefault(str(value), []).append(r)
    return groups


# -- statistics --------------------------------------------------------------------------------------------


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """``{"mean", "ci_low", "ci_high", "n"}``: Student-t interval (``None`` bounds when n < 2)."""
    import numpy as np
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": n}
    sem = float(x.std(ddof=1) / math.sqrt(n))
    if sem == 0:  # identical values: the t interval is undefined (scipy gives nan), not a zero-width one
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": n}
    lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return {"mean": mean, "ci_low": float(lo), "ci_high": float(hi), "n": n}


def compare(
    reports: Sequence[dict],
    *,
    by: str = "arm",
    baseline: str | None = None,
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> dict:
    """The comparison document: ``{"baseline", "arms": {ARM: {METRIC: {mean, ci_low, ci_high, n}}},
    "diff": {ARM: {METRIC: {mean, ci_low, ci_high}}}}`` (differences arm − baseline, paired by seed,
    for every arm but the baseline). ``metrics``: which to include (default: every metric some run
    reports, headline ones first). ``confidence``: level of every interval, in (0, 1); a level other
    than 0.95 is recorded as ``"confidence"`` in the document (absent = 0.95)."""
    if not (isinstance(confidence, int | float) and 0 < confidence < 1):
        raise UsageError(f"confidence must be a level between 0 and 1 (e.g. 0.95), got {confidence!r}")
    groups = group_reports(reports, by)
    if baseline is None:
        baseline = "text_only" if "text_only" in groups else next(iter(groups))
    if baseline not in groups:
        raise UsageError(f"--baseline {baseline!r} is not among the arms: {', '.join(groups)}")
    if metrics is None:
        seen = dict.fromkeys(k for r in reports for k in r["metrics"])
        metrics = [m for m in HEADLINE if m in seen] + sorted(m for m in seen if m not in HEADLINE)
    arms = {
        arm: {m: mean_ci([r["metrics"].get(m, math.nan) for r in rs], confidence) for m in metrics}
        for arm, rs in groups.items()
    }
    base = {r.get("seed"): r for r in groups[baseline]}
    diff: dict[str, dict] = {}
    for arm, rs in groups.items():
        if arm == baseline:
            continue
        diff[arm] = {}
        for m in metrics:
            d = [
                r["metrics"][m] - base[r.get("seed")]["metrics"][m]
                for r in rs
                if r.get("seed") in base and m in r["metrics"] and m in base[r.get("seed")]["metrics"]
            ]
            s = mean_ci(d, confidence)
            diff[arm][m] = {"mean": s["mean"], "ci_low": s["ci_low"], "ci_high": s["ci_high"]}
    level = {} if confidence == 0.95 else {"confidence": confidence}  # the default level keeps the schema exact
    return {"baseline": baseline, **level, "arms": arms, "diff": diff}


def chance_levels(reports: Sequence[dict]) -> dict[str, float]:
    """Chance level per QA metric (from the reports; identical across runs evaluated on the same questions)."""
    out: dict[str, float] = {}
    for r in reports:
        for k, v in (r.get("chance") or {}).items():
            out.setdefault(k, v)
    return out


# -- rendering ----------------------------------------------------------------------------------------------


def _fmt(s: Mapping, digits: int) -> str:
    if s.get("mean") is None:
        return "–"
    if s.get("ci_low") is None:
        return f"{s['mean']:.{digits}f}"
    half = (s["ci_high"] - s["ci_low"]) / 2
    return f"{s['mean']:.{digits}f} ± {half:.{digits}f}"


def _level(doc: Mapping) -> str:
    """``"95 %"`` for ``doc["confidence"] == 0.95`` (the default when absent), ``"97.5 %"`` for 0.975."""
    return f"{100 * float(doc.get('confidence', 0.95)):g} %"


def _digits(metric: str) -> int:
    return 1 if metric.startswith("qa_") or metric.startswith("pose") else 3


def markdown(
    doc: Mapping,
    *,
    metrics: Sequence[str] | None = None,
    chance: Mapping[str, float] | None = None,
    extra_rows: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """Two markdown tables: arms × metrics (mean ± half-width of the CI at ``doc["confidence"]``, 95 % when
    absent; n seeds) and the paired
    differences to the baseline with their intervals (``*`` = the interval excludes zero; ``better`` /
    ``worse`` read with each metric's direction). ``extra_rows``: reference rows such as the constant
    baseline and the positive control (one value per metric)."""
    arms = doc["arms"]
    metrics = list(metrics or next(iter(arms.values())).keys())
    head = "| arm | n | " + " | ".join(f"{m} ({'↑' if higher_is_better(m) else '↓'})" for m in metrics) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(metrics)]
    for arm, row in arms.items():
        n = max((s["n"] for s in row.values()), default=0)
        mark = " (baseline)" if arm == doc["baseline"] else ""
        lines.append(f"| {arm}{mark} | {n} | " + " | ".join(_fmt(row.get(m, {}), _digits(m)) for m in metrics) + " |")
    for name, values in (extra_rows or {}).items():
        lines.append(
            f"| *{name}* | | "
            + " | ".join("–" if values.get(m) is None else f"{values[m]:.{_digits(m)}f}" for m in metrics)
            + " |"
        )
    if chance:
        lines.append("| *chance* | | " + " | ".join(f"{chance[m]:.1f}" if m in chance else "–" for m in metrics) + " |")
    lines += [
        "",
        f"Paired difference to `{doc['baseline']}` (arm − baseline, mean [{_level(doc)} CI] over seeds; "
        f"`*` = interval excludes zero):",
        "",
        "| arm | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for arm, row in doc["diff"].items():
        cells = []
        for m in metrics:
            s = row.get(m, {})
            if s.get("mean") is None:
                cells.append("–")
                continue
            d = _digits(m)
            cell = f"{s['mean']:+.{d}f}"
            if s.get("ci_low") is not None:
                cell += f" [{s['ci_low']:+.{d}f}, {s['ci_high']:+.{d}f}]"
                if s["ci_low"] > 0 or s["ci_high"] < 0:
                    good = (s["mean"] > 0) == higher_is_better(m)
                    cell += f" * {'better' if good else 'worse'}"
            cells.append(cell)
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "Directions: " + "; ".join(f"{m} {direction_word(m)}" for m in metrics) + "."]
    return "\n".join(lines) + "\n"


def plot(
    doc: Mapping,
    path: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    extra_rows: Mapping[str, Mapping[str, float]] | None = None,
) -> Path | None:
    """One panel per metric: a bar per arm (mean) with its CI (``doc["confidence"]``) as an error bar; dashed lines for
    ``extra_rows`` (constant baseline, positive control). ``None`` (with a warning) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        import warnings

        warnings.warn("matplotlib is not installed; skipping the plot (pip install matplotlib)", stacklevel=2)
        return None
    arms = list(doc["arms"])
    metrics = list(metrics or next(iter(doc["arms"].values())).keys())
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 1, 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes[0], metrics, strict=False):
        means: list[float] = []
        errs: list[list[float]] = [[], []]
        for arm in arms:
            s = doc["arms"][arm].get(m, {})
            mu = s.get("mean")
            means.append(math.nan if mu is None else mu)
            lo = s.get("ci_low")
            errs[0].append(0 if lo is None else mu - lo)
            errs[1].append(0 if lo is None else s["ci_high"] - mu)
        ax.bar(range(len(arms)), means, yerr=errs, capsize=3, color=[colors[i % len(colors)] for i in range(len(arms))])
        for j, (name, values) in enumerate((extra_rows or {}).items()):
            if values.get(m) is not None:
                ax.axhline(values[m], ls="--" if j == 0 else ":", color="k", lw=1, label=name)
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=40, ha="right", fontsize=8)
        ax.set_title(f"{m}\n({direction_word(m)})", fontsize=9)
        if extra_rows and any(values.get(m) is not None for values in extra_rows.values()):
            ax.legend(fontsize=7)
    fig.suptitle(f"mean ± {_level(doc)} CI over seeds (baseline: {doc['baseline']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def reference_rows(reports: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Mean constant-baseline and positive-control values per headline probe metric over all runs (they
    depend only on the evaluation scenes, not on the student)."""
    import numpy as np

    rows: dict[str, dict[str, float]] = {"constant baseline": {}, "positive control": {}}
    for m in (
        "depth_absrel",
        "depth_delta1",
        "depth_aligned_absrel",
        "depth_aligned_delta1",
        "pose_error",
        "translation_error",
    ):
        for name, suffix in (("constant baseline", "_constant"), ("positive control", "_control")):
            vals = [r["metrics"][m + suffix] for r in reports if m + suffix in r["metrics"]]
            if vals:
                rows[name][m] = float(np.mean(vals))
    return {k: v for k, v in rows.items() if v}
