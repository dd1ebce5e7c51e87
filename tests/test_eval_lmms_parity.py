"""Agreement of the lmms-eval protocol with lmms-eval 0.7.x's own VSI-Bench functions.

lmms-eval is not a test dependency (it pulls ~80 packages and pins an older PyAV). The test loads
``lmms_eval/tasks/vsibench/utils.py`` from an installed lmms-eval distribution directly (it needs
numpy, pandas, pyyaml, loguru and datasets) and skips with the reason when that is not possible.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import random

import pytest

from geovr.eval.prompts import doc_prompt
from geovr.eval.vsibench import DIRECTION_LEVELS, TASKS, score, score_question


def _lmms_vsibench():
    try:
        dist = md.distribution("lmms-eval")
    except md.PackageNotFoundError:
        pytest.skip("lmms-eval is not installed (pip install 'lmms-eval>=0.7,<0.8'); parity with its VSI-Bench "
                    "scoring is not checked")
    if not dist.version.startswith("0.7."):
        pytest.skip(f"lmms-eval {dist.version} installed; this parity test targets 0.7.x")
    path = dist.locate_file("lmms_eval/tasks/vsibench/utils.py")
    spec = importlib.util.spec_from_file_location("_lmms_vsibench_utils", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError) as exc:
        pytest.skip(f"lmms-eval's VSI-Bench utils at {path} cannot be imported: {exc}")
    return module


NUMERICAL = ["object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation"]
CHOICE = ["object_rel_distance", *DIRECTION_LEVELS, "route_planning", "obj_appearance_order"]
WORDS = ["zero", "one", "two", "three", "seven", "eleven", "twelve", "nineteen", "twenty", "forty", "ninety"]


def _numeric_response(rng: random.Random, target: float) -> str:
    kind = rng.randrange(9)
    near = target * rng.choice([0.4, 0.5, 0.55, 0.75, 0.9, 0.95, 1.0, 1.05, 1.25, 1.5, 2.0, rng.uniform(0, 2)])
    if kind == 0:
        return f"{near:g}"
    if kind == 1:
        return f"{round(near, 2)}"
    if kind == 2:
        return f"There are {int(round(near))} of them."
    if kind == 3:
        return rng.choice(WORDS).capitalize() + "."
    if kind == 4:
        return f"{rng.choice(WORDS)}-{rng.choice(['one', 'two', 'five'])} meters"
    if kind == 5:
        return f"{rng.choice(WORDS)} hundred and {rng.choice(WORDS)} cm, not {rng.randint(1, 9)}"
    if kind == 6:
        return f"room {rng.randint(1, 9)}, {rng.choice(WORDS)} chairs"
    if kind == 7:
        return rng.choice(["", "I don't know", "none", "N/A", "-", "approximately"])
    return f"-{near:.1f}" if rng.random() < 0.3 else f"{near:.3f}m"


def _choice_response(rng: random.Random) -> str:
    letter = rng.choice("ABCDabcd")
    return rng.choice([letter, f"{letter}.", f"{letter}. the chair", f" {letter}", f"{letter})", f"{letter}.\n",
                       f"Option {letter}", "", "The answer is B", f"{letter}..", f"{letter} ."])


def _cases(n: int, seed: int):
    rng = random.Random(seed)
    docs, preds = [], []
    for i in range(n):
        qt = rng.choice(NUMERICAL + CHOICE) if i >= len(NUMERICAL + CHOICE) else (NUMERICAL + CHOICE)[i]
        if qt in NUMERICAL:
            target = rng.choice([rng.randint(1, 12), round(rng.uniform(0.1, 9.0), 1), rng.randint(10, 400)])
            docs.append({"id": str(i), "dataset": "scannet", "scene_name": "s", "question_type": qt,
                         "question": f"How many chairs are in room {i}?", "options": None,
                         "ground_truth": str(target)})
            preds.append(_numeric_response(rng, float(target)))
        else:
            docs.append({"id": str(i), "dataset": "scannet", "scene_name": "s", "question_type": qt,
                         "question": f"Which is closest to the door {i}?",
                         "options": ["A. chair", "B. table", "C. sofa", "D. lamp"],
                         "ground_truth": rng.choice("ABCD")})
            preds.append(_choice_response(rng))
    return docs, preds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_lmms_eval(seed):
    lm = _lmms_vsibench()
    docs, preds = _cases(400, seed)
    processed = []
    for doc, pred in zip(docs, preds):
        out = lm.vsibench_process_results(dict(doc), [pred])["vsibench_overall"]
        processed.append(out)
        key = "accuracy" if doc["question_type"] in CHOICE else "MRA:.5:.95:.05"
        ours = score_question(doc, pred, protocol="lmms-eval")[1]
        assert ours == pytest.approx(float(out[key]), abs=1e-12), (doc, pred)
    theirs = lm._compute_all_subscores(processed)
    ours = score(docs, preds, protocol="lmms-eval")
    names = {t: (f"{t}_accuracy" if t not in NUMERICAL else f"{t}_MRA:.5:.95:.05") for t in TASKS}
    names["object_rel_direction"] = "object_rel_direction_accuracy"
    for t in TASKS:
        assert ours[t] == pytest.approx(100 * theirs[names[t]], abs=1e-9), t
    assert ours["overall"] == pytest.approx(100 * theirs["overall"], abs=1e-9)
    # the generated cases exercise both parsers' interesting branches
    assert 0 < sum(score_question(d, p, protocol="lmms-eval")[1] == 0 for d, p in zip(docs, preds)) < len(docs)


def test_prompts_match_lmms_eval():
    lm = _lmms_vsibench()
    docs, _ = _cases(len(NUMERICAL + CHOICE), 0)
    for doc in docs:
        assert doc_prompt(doc, protocol="lmms-eval") == lm.vsibench_doc_to_text(dict(doc), {}), doc["question_type"]
