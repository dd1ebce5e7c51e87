"""Generated VSI-Bench cases for the lmms-eval scoring snapshot (standard library only).

Shared by ``tests/test_eval_lmms_parity.py`` and ``regenerate_lmms.py`` (which runs where lmms-eval is
installed and geovr need not be). The responses exercise both parsers' branches: numbers, number words,
units, prose, empty answers, option letters with and without punctuation.
"""

from __future__ import annotations

import random

NUMERICAL = ["object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation"]
DIRECTION_LEVELS = ["object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard"]
CHOICE = ["object_rel_distance", *DIRECTION_LEVELS, "route_planning", "obj_appearance_order"]
WORDS = ["zero", "one", "two", "three", "seven", "eleven", "twelve", "nineteen", "twenty", "forty", "ninety"]
SEEDS = (0, 1, 2)
CASES_PER_SEED = 400


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
    return rng.choice(
        [
            letter,
            f"{letter}.",
            f"{letter}. the chair",
            f" {letter}",
            f"{letter})",
            f"{letter}.\n",
            f"Option {letter}",
            "",
            "The answer is B",
            f"{letter}..",
            f"{letter} .",
        ]
    )


def cases(n: int, seed: int) -> tuple[list[dict], list[str]]:
    """``n`` VSI-Bench documents (every question type among the first 12) and one response each."""
    rng = random.Random(seed)
    docs, preds = [], []
    for i in range(n):
        qt = rng.choice(NUMERICAL + CHOICE) if i >= len(NUMERICAL + CHOICE) else (NUMERICAL + CHOICE)[i]
        if qt in NUMERICAL:
            target = rng.choice([rng.randint(1, 12), round(rng.uniform(0.1, 9.0), 1), rng.randint(10, 400)])
            docs.append(
                {
                    "id": str(i),
                    "dataset": "scannet",
                    "scene_name": "s",
                    "question_type": qt,
                    "question": f"How many chairs are in room {i}?",
                    "options": None,
                    "ground_truth": str(target),
                }
            )
            preds.append(_numeric_response(rng, float(target)))
        else:
            docs.append(
                {
                    "id": str(i),
                    "dataset": "scannet",
                    "scene_name": "s",
                    "question_type": qt,
                    "question": f"Which is closest to the door {i}?",
                    "options": ["A. chair", "B. table", "C. sofa", "D. lamp"],
                    "ground_truth": rng.choice("ABCD"),
                }
            )
            preds.append(_choice_response(rng))
    return docs, preds


def metric_key(question_type: str) -> str:
    """The per-question field of lmms-eval's ``vsibench_process_results`` output for a question type."""
    return "MRA:.5:.95:.05" if question_type in NUMERICAL else "accuracy"
