"""``geovr ablate DIR``: train and evaluate every recipe of a folder (one arm each) over several seeds,
then compare the arms (:mod:`geovr.eval.compare`).

Each ``DIR/<arm>.toml`` is an arm (the file name is its name). An optional ``DIR/ablation.toml`` (not
an arm) sets the defaults::

    baseline = "text_only"  # arm the others are compared to
    seeds = 3  # seeds 0 .. seeds-1 (the recipe's top-level `seed`)
    output_dir = "runs/ablation"  # where the runs go: <output_dir>/<arm>/seed-<k>
    overrides = []  # key=value applied to every arm
    [quick]  # what --quick changes
    seeds = 2
    overrides = ["trainer.max_steps=100"]
    arms = ["text_only", "all_four"]  # optional: only these arms (default: all)
    output_dir = "runs/ablation-quick"  # optional (default: <output_dir>-quick, never the full runs')

Every run is ``geovr run`` then ``geovr eval`` in a child process (so one failing run does not stop the
others, and ``--jobs`` can run several at once); its log goes to ``<run>/ablate.log`` and its result to
``<run>/ablation-result.json``. A run whose result exists with the same recipe text, overrides and seed is
skipped, so an interrupted ablation resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from geovr.errors import GeovrError, UsageError

SETTINGS = "ablation.toml"
#: In a results document, everything from this line on is kept when ``--report`` rewrites the file.
NOTES_MARKER = "<!-- notes: kept when this file is regenerated -->"
EXAMPLES = """\
examples:
  geovr ablate recipes/ablation                          every arm x its seeds, then the comparison table
  geovr ablate recipes/ablation --quick --jobs 2         the [quick] settings of ablation.toml (minutes)
  geovr ablate recipes/ablation --seeds 5 --jobs 2 --json runs/ablation/comparison.json
  geovr ablate my_arms/ --output runs/my_arms trainer.lr=5e-4
  geovr ablate recipes/ablation --report docs/results.md  also write the results document
  geovr ablate recipes/ablation --dry-run                list the runs and what is already done

Runs go to OUTPUT/<arm>/seed-<k>/ (OUTPUT defaults to runs/ablation-<folder name>, or output_dir in
FOLDER/ablation.toml; with --quick OUTPUT-quick); finished runs are skipped, so re-running resumes. The comparison is written to
OUTPUT/comparison.{md,json,png} and printed. Exit codes: 0 ok, 1 a run failed, 2 usage/recipe error."""


def _n(count: int, noun: str) -> str:
    """``"1 seed"`` / ``"3 seeds"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def add_parser(sub) -> None:
    """Register ``geovr ablate``."""
    p = sub.add_parser(
        "ablate",
        help="train + evaluate a folder of recipes over seeds and compare the arms",
        description="Run an ablation: every recipe in DIR is an arm (file name = arm name); each "
        "arm is trained and evaluated once per seed (held-out evaluation scenes come "
        "from the recipes' [[evaluators]]), then the arms are compared: mean ± 95% CI "
        "over seeds and the paired difference to the baseline arm.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", metavar="DIR", help="folder of recipes, one per arm")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides applied to every arm")
    p.add_argument("--seeds", type=int, metavar="N", help="seeds per arm (default 3, or `seeds` in ablation.toml)")
    p.add_argument(
        "--quick", action="store_true", help="the [quick] table of ablation.toml: fewer seeds, steps or arms"
    )
    p.add_argument("--output", metavar="DIR", help="where the runs go (default runs/ablation-<folder name>)")
    p.add_argument("--baseline", metavar="ARM", help="baseline arm (default text_only if present)")
    p.add_argument("--arm", action="append", metavar="NAME", help="run only these arms (repeatable)")
    p.add_argument(
        "--jobs", type=int, default=1, metavar="J", help="runs at once (default 1); each gets cores/J torch threads"
    )
    p.add_argument("--json", metavar="PATH", help="also write the comparison JSON to PATH")
    p.add_argument(
        "--report", metavar="PATH", help="write a results document (tables, plot, seeds, commit, wall time) to PATH"
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs (and which are done); run nothing")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


# -- planning ---------------------------------------------------------------------------------------------


def read_settings(folder: Path) -> dict:
    """``DIR/ablation.toml`` (``{}`` when absent), checked: unknown keys are an error naming the file."""
    import tomllib

    path = folder / SETTINGS
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML ({exc})") from exc
    allowed = {"baseline", "seeds", "output_dir", "overrides", "quick"}
    problems = [f"{path}: unknown key {k!r} (allowed: {', '.join(sorted(allowed))})" for k in data if k not in allowed]
    quick = data.get("quick", {})
    if not isinstance(quick, dict):
        problems.append(f"{path}: [quick] must be a table")
    else:
        problems += [
            f"{path}: unknown key quick.{k!r} (allowed: seeds, overrides, arms, output_dir)"
            for k in quick
            if k not in ("seeds", "overrides", "arms", "output_dir")
        ]
        arms = quick.get("arms", [])
        if not isinstance(arms, list) or not all(isinstance(a, str) and a for a in arms):
            problems.append(f"{path}: quick.arms must be a list of arm names, got {arms!r}")
        if "output_dir" in quick and not (isinstance(quick["output_dir"], str) and quick["output_dir"]):
            problems.append(f"{path}: quick.output_dir must be a path, got {quick['output_dir']!r}")
    for where, table in (("", data), ("quick.", quick if isinstance(quick, dict) else {})):
        if "seeds" in table and (not isinstance(table["seeds"], int) or table["seeds"] < 1):
            problems.append(f"{path}: {where}seeds must be an integer >= 1, got {table['seeds']!r}")
        ov = table.get("overrides", [])
        if not isinstance(ov, list) or not all(isinstance(o, str) and "=" in o for o in ov):
            problems.append(f"{path}: {where}overrides must be a list of 'key=value' strings, got {ov!r}")
    if problems:
        raise UsageError("\n".join(problems))
    return data


def plan(args) -> dict:
    """Arms, seeds, overrides and run directories (every recipe validated first: all problems at once)."""
    from geovr.errors import RecipeError
    from geovr.recipe import load_recipe

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder of recipes (give a directory holding <arm>.toml files)")
    settings = read_settings(folder)
    arms = {p.stem: p for p in sorted(folder.glob("*.toml")) if p.name != SETTINGS}
    quick = settings.get("quick", {}) if args.quick else {}
    chosen, where = (args.arm, "--arm") if args.arm else (quick.get("arms"), f"{folder / SETTINGS}: quick.arms")
    if chosen:
        unknown = [a for a in chosen if a not in arms]
        if unknown:
            raise UsageError(f"{where} {', '.join(unknown)}: not in {folder} (arms: {', '.join(arms) or 'none'})")
        arms = {a: arms[a] for a in chosen}
    if len(arms) < 1:
        raise UsageError(f"{folder}: no recipes (*.toml) found")
    seeds = args.seeds or quick.get("seeds") or (2 if args.quick else settings.get("seeds", 3))
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    overrides = [*settings.get("overrides", []), *quick.get("overrides", []), *args.overrides]
    problems = []
    for path in arms.values():
        try:
            load_recipe(path, overrides, require_training=True)
        except RecipeError as exc:
            problems += [f"{path}: {p}" for p in exc.problems]
    if problems:
        raise RecipeError(problems, source=str(folder))
    output = Path(args.output or settings.get("output_dir") or Path("runs") / f"ablation-{folder.resolve().name}")
    if args.quick and not args.output:  # never the full runs' folder: their results stay
        output = Path(quick.get("output_dir") or f"{output}-quick")
    baseline = args.baseline or settings.get("baseline") or ("text_only" if "text_only" in arms else None)
    if baseline is not None and baseline not in arms and not (args.arm or quick.get("arms")):
        raise UsageError(f"baseline {baseline!r} is not an arm of {folder} (arms: {', '.join(arms)})")
    runs = []
    for arm, path in arms.items():
        for seed in range(seeds):
            run_overrides = [*overrides, f"seed={seed}"]
            text = path.read_text(encoding="utf-8")
            fingerprint = hashlib.sha256(json.dumps([text, run_overrides]).encode()).hexdigest()[:16]
            runs.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "recipe": str(path),
                    "overrides": run_overrides,
                    "run_dir": output / arm / f"seed-{seed}",
                    "fingerprint": fingerprint,
                }
            )
    return {
        "folder": folder,
        "output": output,
        "baseline": baseline,
        "seeds": seeds,
        "runs": runs,
        "overrides": overrides,
        "quick": bool(args.quick),
    }


def is_done(run: dict) -> bool:
    """True when the run's result exists for the same recipe text, overrides and seed."""
    from geovr.eval.compare import RESULT_FILE

    path = Path(run["run_dir"]) / RESULT_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("fingerprint") == run["fingerprint"]
    except json.JSONDecodeError:
        return False


# -- running ----------------------------------------------------------------------------------------------


def _child(cmd: list[str], log, env) -> int:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode


def execute(run: dict, *, threads: int) -> dict:
    """Train then evaluate one run in child processes; write and return its result (raises
    :class:`GeovrError` naming the log on failure)."""
    from geovr.eval.compare import RESULT_FILE, metrics_from_eval

    run_dir = Path(run["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    exe = [sys.executable, "-m", "geovr"]
    log_path = run_dir / "ablate.log"
    trained = run_dir / ".ablate-trained"
    with open(log_path, "a", encoding="utf-8") as log:
        t0 = time.perf_counter()
        if trained.is_file() and trained.read_text(encoding="utf-8").strip() == run["fingerprint"]:
            log.write("training already done (resumed): evaluating only\n")
        else:
            rc = _child(
                [
                    *exe,
                    "run",
                    run["recipe"],
                    *run["overrides"],
                    f'output_dir="{run_dir}"',
                    "trainer.overwrite=true",
                    "trainer.progress=false",
                ],
                log,
                env,
            )
            if rc != 0:
                raise GeovrError(f"{run['arm']} seed {run['seed']}: training failed (exit {rc}); see {log_path}")
            trained.write_text(run["fingerprint"] + "\n", encoding="utf-8")
        t_train = time.perf_counter() - t0
        eval_dir = run_dir / "eval" / "final"
        t0 = time.perf_counter()
        if eval_dir.exists():  # answers of an interrupted evaluation: start it afresh
            import shutil

            shutil.rmtree(eval_dir)
        rc = _child([*exe, "eval", str(run_dir), "--output", str(eval_dir)], log, env)
        t_eval = time.perf_counter() - t0
        if rc != 0:
            raise GeovrError(f"{run['arm']} seed {run['seed']}: evaluation failed (exit {rc}); see {log_path}")
    metrics, chance = metrics_from_eval(eval_dir)
    result = {
        "arm": run["arm"],
        "seed": run["seed"],
        "recipe": run["recipe"],
        "overrides": run["overrides"],
        "fingerprint": run["fingerprint"],
        "metrics": metrics,
        "chance": chance,
        "train_seconds": round(t_train, 1),
        "eval_seconds": round(t_eval, 1),
    }
    tmp = run_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / RESULT_FILE)
    return result


def run(args) -> int:
    """Entry point of ``geovr ablate``."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm import tqdm

    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    p = plan(args)
    p["commit"] = _commit()  # before any file is written: the report's own files must not read as changes
    arm_order = {a: i for i, a in enumerate(dict.fromkeys(r["arm"] for r in p["runs"]))}
    # seed by seed, the baseline first: an interrupted ablation has complete seeds of every arm
    todo = sorted(
        (r for r in p["runs"] if not is_done(r)),
        key=lambda r: (r["seed"], r["arm"] != p["baseline"], arm_order[r["arm"]]),
    )
    print(
        f"geovr ablate: {_n(len(p['runs']), 'run')} ({_n(len(p['runs']) // p['seeds'], 'arm')} x "
        f"{_n(p['seeds'], 'seed')}) -> "
        f"{p['output']}; {len(p['runs']) - len(todo)} already done",
        file=sys.stderr,
    )
    if args.dry_run:
        for r in p["runs"]:
            print(f"  {'done' if r not in todo else 'todo'}  {r['arm']:<20} seed {r['seed']}  {r['run_dir']}")
        return 0
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    t0 = time.perf_counter()
    failures = []
    with (
        tqdm(
            total=len(p["runs"]),
            initial=len(p["runs"]) - len(todo),
            desc="geovr ablate",
            unit="run",
            disable=args.no_progress,
        ) as bar,
        ThreadPoolExecutor(max_workers=args.jobs) as pool,
    ):
        futures = {pool.submit(execute, r, threads=threads): r for r in todo}
        for fut in as_completed(futures):
            r = futures[fut]
            try:
                fut.result()
            except GeovrError as exc:
                failures.append(str(exc))
            bar.set_postfix_str(f"{r['arm']} seed {r['seed']}")
            bar.update(1)
    wall = time.perf_counter() - t0
    if failures:
        raise GeovrError(f"{len(failures)} run(s) failed:\n" + "\n".join(f"  - {f}" for f in failures))
    summarize(p, wall=wall, json_path=args.json, report=args.report)
    return 0


def summarize(p: dict, *, wall: float, json_path: str | None = None, report: str | None = None) -> dict:
    """Compare the runs of plan ``p``; print the markdown and write OUTPUT/comparison.{md,json,png}
    (and ``json_path``, and the results document ``report``). Returns the comparison document."""
    from geovr.eval.compare import (
        HEADLINE,
        RESULT_FILE,
        chance_levels,
        compare,
        markdown,
        plot,
        reference_rows,
        run_report,
    )

    reports = [run_report(r["run_dir"]) for r in p["runs"] if (Path(r["run_dir"]) / RESULT_FILE).is_file()]
    doc = compare(reports, baseline=p["baseline"])
    present = next(iter(doc["arms"].values()))
    metrics = [m for m in HEADLINE if m in present]
    refs = reference_rows(reports)
    text = markdown(doc, metrics=metrics, chance=chance_levels(reports), extra_rows=refs)
    out = Path(p["output"])
    (out / "comparison.md").write_text(text, encoding="utf-8")
    (out / "comparison.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    plot(doc, out / "comparison.png", metrics=metrics, extra_rows=refs)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if report:
        write_report(Path(report), p, doc, reports, wall=wall)
    print(text, end="")
    return doc


def _commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if sha.returncode == 0:
            return sha.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def _setup_lines(p: dict) -> list[str]:
    """The shared setup of the arms, read from the baseline (or first) recipe as run."""
    from geovr.recipe import load_recipe

    run = next((r for r in p["runs"] if r["arm"] == p["baseline"]), p["runs"][0])
    raw = load_recipe(run["recipe"], p["overrides"]).raw
    bb, tr, data = raw.get("backbone", {}), raw.get("trainer", {}), raw.get("data", {}).get("train", {})
    lines = [
        "## Setup",
        "",
        f"- student: `{bb.get('component')}` `{bb.get('pretrained')}` (freeze {bb.get('freeze', [])}); teacher "
        f"`{raw.get('teacher', {}).get('component')}`",
        f"- training data: `{data.get('component')}` {data.get('num_samples')} samples "
        f"({data.get('questions_per_scene', 1)} questions per scene), {data.get('num_frames')} frames of "
        f"{data.get('image_size')}, data seed {data.get('seed', 0)}",
        f"- schedule: {tr.get('max_steps')} steps × batch {tr.get('batch_size')}, lr {tr.get('lr')}, heads "
        f"{tr.get('head_lr')}",
        "- arms differ only in `[[objectives]]`: "
        + "; ".join(
            f"`{a}` = {', '.join(o.get('component') for o in load_recipe(r['recipe'], p['overrides']).raw.get('objectives', [])) or 'none'}"
            for a, r in {r["arm"]: r for r in p["runs"]}.items()
        ),
    ]
    for ev in raw.get("evaluators", []):
        opts = ev.get("dataset_options", {})
        lines.append(
            f"- evaluator `{ev.get('component')}` on held-out scenes (dataset seed {opts.get('seed', 12345)}"
            f", {ev.get('num_samples', opts.get('num_samples'))} samples)"
        )
    return [*lines, ""]


def write_report(path: Path, p: dict, doc: dict, reports: list[dict], *, wall: float) -> None:
    """The results document: command, commit, seeds, wall time, the comparison tables and plot, the
    per-task QA table with chance levels, and per-run times. When ``path`` exists and holds
    :data:`NOTES_MARKER`, the notes from that line on are kept below the regenerated part."""
    import datetime

    from geovr.eval.compare import HEADLINE, chance_levels, markdown, plot, reference_rows

    path.parent.mkdir(parents=True, exist_ok=True)
    png = path.with_suffix(".png")
    refs = reference_rows(reports)
    present = next(iter(doc["arms"].values()))
    metrics = [m for m in HEADLINE if m in present]
    plot(doc, png, metrics=metrics, extra_rows=refs)
    chance = chance_levels(reports)
    qa = [m for m in present if m.startswith("qa_") and m != "qa_overall"] + ["qa_overall"]
    cmd = f"geovr ablate {p['folder']}" + (" --quick" if p["quick"] else "") + f" --seeds {p['seeds']}"
    from geovr.eval.compare import RESULT_FILE

    starts = [
        (Path(r["run_dir"]) / "environment.json").stat().st_mtime
        for r in reports
        if (Path(r["run_dir"]) / "environment.json").is_file()
    ]
    ends = [(Path(r["run_dir"]) / RESULT_FILE).stat().st_mtime for r in reports]
    span = (max(ends) - min(starts)) / 60 if starts and ends else float("nan")
    train = sum(r.get("train_seconds", 0) for r in reports)
    evals = sum(r.get("eval_seconds", 0) for r in reports)
    setup = _setup_lines(p)
    lines = [
        "# Results: geometry distillation ablation on the synthetic world",
        "",
        f"Regenerate with: `{cmd} --report {path}`"
        + (f" (overrides: {' '.join(p['overrides'])})" if p["overrides"] else ""),
        "",
        f"- arms: {', '.join(doc['arms'])} (baseline `{doc['baseline']}`); seeds: "
        f"{', '.join(str(s) for s in range(p['seeds']))}",
        f"- commit: `{p.get('commit') or _commit()}` (when this invocation started); written {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- wall time: {span:.1f} min from the first run's start to the last result ({wall / 60:.1f} min in this "
        f"invocation, which skips finished runs); training {train / 60:.1f} min + evaluation {evals / 60:.1f} min "
        f"summed over runs ({os.cpu_count()} CPU cores)",
        f"- runs: `{p['output']}/<arm>/seed-<k>/` (logs, checkpoints, evaluation reports)",
        "",
        *setup,
        "## Headline metrics (held-out scenes)",
        "",
        markdown(doc, metrics=metrics, chance=chance, extra_rows=refs),
        f"![comparison]({png.name})",
        "",
        "## Synthetic QA per task (held-out scenes; score 0–100, higher is better)",
        "",
        markdown(
            {
                "baseline": doc["baseline"],
                "arms": {a: {m: row[m] for m in qa if m in row} for a, row in doc["arms"].items()},
                "diff": {a: {m: row[m] for m in qa if m in row} for a, row in doc["diff"].items()},
            },
            metrics=qa,
            chance=chance,
        ),
    ]
    text = "\n".join(lines) + "\n"
    if path.is_file():  # hand-written notes after the marker survive regeneration
        old = path.read_text(encoding="utf-8")
        if NOTES_MARKER in old:
            text += "\n" + old[old.index(NOTES_MARKER) :]
    path.write_text(text, encoding="utf-8")
