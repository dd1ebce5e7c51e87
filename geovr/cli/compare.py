"""``geovr compare``: one table (markdown, JSON, PNG) from the evaluation reports of many runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  geovr compare runs/ablation                              every run of a `geovr ablate` output, arms as rows
  geovr compare runs/a-seed0 runs/a-seed1 runs/b-seed0 runs/b-seed1 --by name --baseline a
  geovr compare runs/sweep --by trainer.lr --json sweep.json --plot sweep.png
  geovr compare runs/ablation --baseline text_only --markdown table.md
  geovr compare runs/ablation --metric pose_error --confidence 0.99   a stricter interval

A run directory is one `geovr run` output that was evaluated (`geovr eval RUN_DIR`) or one run of
`geovr ablate` (its ablation-result.json). --by groups runs by a report field (arm, seed) or a dotted
recipe key; runs of one group are seeds. Statistics: mean ± Student-t interval over seeds (95 % unless
--confidence says otherwise); the difference to --baseline is paired by seed (arm − baseline) with its
own t interval."""


def add_parser(sub) -> None:
    """Register ``geovr compare``."""
    p = sub.add_parser(
        "compare",
        help="compare evaluated runs: mean ± CI per arm, paired differences",
        description="Gather the evaluation reports of many runs into one table: arms as rows, "
        "mean ± 95% confidence interval over seeds, and the paired difference to the "
        "baseline arm with its interval. Prints markdown; writes JSON and a PNG plot "
        "on request.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or folders holding runs")
    p.add_argument(
        "--by", default="arm", metavar="KEY", help="group runs by this report field or dotted recipe key (default: arm)"
    )
    p.add_argument("--baseline", metavar="ARM", help="baseline arm (default: text_only if present, else the first)")
    p.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help="metrics to show (repeatable; default: the headline metrics present)",
    )
    p.add_argument("--json", metavar="PATH", help="write the comparison as JSON ('-' = stdout instead of markdown)")
    p.add_argument("--markdown", metavar="PATH", help="also write the markdown tables to PATH")
    p.add_argument("--plot", metavar="PATH", help="write a PNG plot (bars = mean, error bars = the CI)")
    p.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        metavar="LEVEL",
        help="level of every interval, between 0 and 1 (default 0.95)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the verb (exit code 0; user mistakes raise :class:`geovr.errors.UsageError`)."""
    from geovr.eval.compare import HEADLINE, chance_levels, compare, find_reports, markdown, plot, reference_rows

    reports = find_reports(args.runs)
    doc = compare(reports, by=args.by, baseline=args.baseline, confidence=args.confidence)
    shown = args.metric or [m for m in (*HEADLINE,) if m in next(iter(doc["arms"].values()))]
    missing = [m for m in shown if m not in next(iter(doc["arms"].values()))]
    if missing:
        from geovr.errors import UsageError

        have = ", ".join(next(iter(doc["arms"].values())))
        raise UsageError(f"--metric {', '.join(missing)}: not reported by these runs (have: {have})")
    text = markdown(doc, metrics=shown, chance=chance_levels(reports), extra_rows=reference_rows(reports))
    if args.json == "-":
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(text, end="")
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot(doc, args.plot, metrics=shown, extra_rows=reference_rows(reports))
    return 0
