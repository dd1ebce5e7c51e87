"""Agreement of the lmms-eval protocol with lmms-eval 0.7.x's own VSI-Bench functions.

Always: geovr's scoring of the generated cases (``tests/snapshots/lmms_cases.py``) is compared with a
committed snapshot of lmms-eval 0.7's outputs for the same cases (``tests/snapshots/
vsibench_lmms_eval_0.7.jsonl``, written by ``tests/snapshots/regenerate_lmms.py``; see the README there):
per-question scores exactly, task and overall scores to 1e-9, and the prompts verbatim.

Also, where lmms-eval 0.7.x is importable (it is not a test dependency: it pulls ~80 packages and pins an
older PyAV), the same comparison runs live against ``lmms_eval/tasks/vsibench/utils.py`` loaded from the
installed distribution; those tests skip with the reason otherwise.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
from pathlib import Path

import pytest

from geovr.eval.prompts import doc_prompt
from geovr.eval.vsibench import TASKS, score, score_question

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
SNAPSHOT = SNAPSHOTS / "vsibench_lmms_eval_0.7.jsonl"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _load("_lmms_cases", SNAPSHOTS / "lmms_cases.py")


def _subscore_name(task: str) -> str:
    return f"{task}_{CASES.metric_key(task)}" if task in CASES.NUMERICAL else f"{task}_accuracy"


def _snapshot() -> dict:
    records = [json.loads(line) for line in SNAPSHOT.read_text(encoding="utf-8").splitlines()]
    out = {"meta": None, "cases": {}, "aggregate": {}, "prompts": []}
    for r in records:
        if r["kind"] == "meta":
            out["meta"] = r
        elif r["kind"] == "case":
            out["cases"].setdefault(r["seed"], []).append(r)
        elif r["kind"] == "aggregate":
            out["aggregate"][r["seed"]] = r["subscores"]
        else:
            out["prompts"].append(r)
    return out


@pytest.fixture(scope="module")
def snapshot():
    return _snapshot()


def _check_scores(docs, preds, per_question, subscores):
    """geovr's lmms-eval protocol against lmms-eval's per-question scores and ``_compute_all_subscores``."""
    for doc, pred, theirs in zip(docs, preds, per_question, strict=True):
        ours = score_question(doc, pred, protocol="lmms-eval")[1]
        assert ours == pytest.approx(theirs, abs=1e-12), (doc, pred)
    ours = score(docs, preds, protocol="lmms-eval")
    for t in TASKS:
        assert ours[t] == pytest.approx(100 * subscores[_subscore_name(t)], abs=1e-9), t
    assert ours["overall"] == pytest.approx(100 * subscores["overall"], abs=1e-9)
    # the generated cases exercise both parsers' interesting branches
    assert 0 < sum(s == 0 for s in per_question) < len(docs)
    assert 0 < sum(s == 1 for s in per_question) < len(docs)


def test_snapshot_is_of_lmms_eval_07_and_of_these_cases(snapshot):
    assert snapshot["meta"]["lmms_eval"].startswith("0.7."), snapshot["meta"]
    assert sorted(snapshot["cases"]) == list(CASES.SEEDS)
    for seed in CASES.SEEDS:
        docs, preds = CASES.cases(CASES.CASES_PER_SEED, seed)
        recorded = snapshot["cases"][seed]
        assert [(r["id"], r["question_type"], r["ground_truth"], r["prediction"]) for r in recorded] == [
            (d["id"], d["question_type"], d["ground_truth"], p) for d, p in zip(docs, preds, strict=True)
        ], "the case generator changed: regenerate the snapshot (tests/snapshots/regenerate_lmms.py)"


@pytest.mark.parametrize("seed", CASES.SEEDS)
def test_scores_match_lmms_eval_snapshot(snapshot, seed):
    docs, preds = CASES.cases(CASES.CASES_PER_SEED, seed)
    _check_scores(docs, preds, [r["score"] for r in snapshot["cases"][seed]], snapshot["aggregate"][seed])


def test_prompts_match_lmms_eval_snapshot(snapshot):
    assert {p["question_type"] for p in snapshot["prompts"]} == set(CASES.NUMERICAL + CASES.CHOICE)
    for p in snapshot["prompts"]:
        assert doc_prompt(p["doc"], protocol="lmms-eval") == p["text"], p["question_type"]


# -- live, where lmms-eval 0.7.x is installed ---------------------------------------------------------


def _lmms_vsibench():
    try:
        dist = md.distribution("lmms-eval")
    except md.PackageNotFoundError:
        pytest.skip(
            "lmms-eval is not installed (pip install 'lmms-eval>=0.7,<0.8'); the snapshot tests above "
            "compare with its recorded outputs"
        )
    if not dist.version.startswith("0.7."):
        pytest.skip(f"lmms-eval {dist.version} installed; this parity test targets 0.7.x")
    path = dist.locate_file("lmms_eval/tasks/vsibench/utils.py")
    try:
        return _load("_lmms_vsibench_utils", Path(path))
    except (ImportError, OSError) as exc:
        pytest.skip(f"lmms-eval's VSI-Bench utils at {path} cannot be imported: {exc}")


@pytest.mark.parametrize("seed", CASES.SEEDS)
def test_scores_match_lmms_eval_live(seed):
    lm = _lmms_vsibench()
    docs, preds = CASES.cases(CASES.CASES_PER_SEED, seed)
    processed = [
        lm.vsibench_process_results(dict(d), [p])["vsibench_overall"] for d, p in zip(docs, preds, strict=True)
    ]
    per_question = [float(o[CASES.metric_key(d["question_type"])]) for d, o in zip(docs, processed, strict=True)]
    _check_scores(docs, preds, per_question, lm._compute_all_subscores(processed))


def test_prompts_match_lmms_eval_live():
    lm = _lmms_vsibench()
    docs, _ = CASES.cases(len(CASES.NUMERICAL + CASES.CHOICE), 0)
    for doc in docs:
        assert doc_prompt(doc, protocol="lmms-eval") == lm.vsibench_doc_to_text(dict(doc), {}), doc["question_type"]
