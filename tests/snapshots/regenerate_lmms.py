"""Regenerate ``vsibench_lmms_eval_0.7.jsonl``: lmms-eval 0.7's own VSI-Bench scoring of the generated cases.

Run with a Python where lmms-eval 0.7.x is installed (geovr is not needed), from anywhere::

    python -m venv /tmp/lmms && /tmp/lmms/bin/pip install 'lmms-eval>=0.7,<0.8'
    /tmp/lmms/bin/python tests/snapshots/regenerate_lmms.py

It loads ``lmms_eval/tasks/vsibench/utils.py`` from the installed distribution by path (that module needs
numpy, pandas, pyyaml, loguru and datasets, not a model), scores every case of ``lmms_cases.py`` with
``vsibench_process_results``, aggregates each seed with ``_compute_all_subscores`` and renders each
question type's prompt with ``vsibench_doc_to_text``. Records are written sorted and stable.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "vsibench_lmms_eval_0.7.jsonl"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    try:
        dist = md.distribution("lmms-eval")
    except md.PackageNotFoundError:
        print("lmms-eval is not installed here: pip install 'lmms-eval>=0.7,<0.8'", file=sys.stderr)
        return 2
    if not dist.version.startswith("0.7."):
        print(f"lmms-eval {dist.version} installed; this snapshot is of 0.7.x", file=sys.stderr)
        return 2
    lm = _load("_lmms_vsibench_utils", Path(dist.locate_file("lmms_eval/tasks/vsibench/utils.py")))
    cases = _load("_lmms_cases", HERE / "lmms_cases.py")

    records = [
        {
            "kind": "meta",
            "lmms_eval": dist.version,
            "python": sys.version.split()[0],
            "seeds": list(cases.SEEDS),
            "cases_per_seed": cases.CASES_PER_SEED,
        }
    ]
    for seed in cases.SEEDS:
        docs, preds = cases.cases(cases.CASES_PER_SEED, seed)
        processed = []
        for doc, pred in zip(docs, preds, strict=True):
            out = lm.vsibench_process_results(dict(doc), [pred])["vsibench_overall"]
            processed.append(out)
            records.append(
                {
                    "kind": "case",
                    "seed": seed,
                    "id": doc["id"],
                    "question_type": doc["question_type"],
                    "ground_truth": doc["ground_truth"],
                    "prediction": pred,
                    "score": float(out[cases.metric_key(doc["question_type"])]),
                }
            )
        subscores = {k: float(v) for k, v in sorted(lm._compute_all_subscores(processed).items())}
        records.append({"kind": "aggregate", "seed": seed, "subscores": subscores})
    docs, _ = cases.cases(len(cases.NUMERICAL + cases.CHOICE), 0)
    for doc in docs:
        records.append(
            {
                "kind": "prompt",
                "question_type": doc["question_type"],
                "doc": doc,
                "text": lm.vsibench_doc_to_text(dict(doc), {}),
            }
        )
    with OUT.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(records)} records, lmms-eval {dist.version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
