"""VSI-Bench metrics and scoring under both protocols, on hand-built prediction lists."""

from __future__ import annotations

import math

import pytest

from geovr.errors import DataError
from geovr.eval.metrics import (
    GEOVR_THRESHOLDS,
    THRESHOLDS,
    extract_number,
    mean_relative_accuracy,
    parse_choice,
    parse_number,
    score_answer,
)
from geovr.eval.vsibench import TASKS, aggregate, score, task_counts


def test_thresholds_are_050_to_095():
    assert len(THRESHOLDS) == 10
    assert THRESHOLDS[0] == 0.5 and THRESHOLDS[-1] == 0.95
    assert all(abs(b - a - 0.05) < 1e-12 for a, b in zip(THRESHOLDS, THRESHOLDS[1:], strict=False))


@pytest.mark.parametrize(
    "pred,target,lmms,geovr",
    [
        (4, 4, 1.0, 1.0),
        (5, 4, 0.6, 0.5),  # |5-4|/4 = 0.25 == 1-0.75 exactly: counted by <=, not by <
        (1.5, 1, 0.1, 0.0),  # ratio 0.5 == 1-0.5: only θ=0.5 and only with <=
        (0.5, 1, 0.1, 0.0),
        (3.0, 5.0, 0.3, 0.2),  # ratio 0.4 == 1-0.6: θ ∈ {0.5, 0.55, 0.6} with <=, {0.5, 0.55} with <
        (90, 100, 0.9, 0.8),  # rel 0.1: lmms-eval's 1-θ is 0.10000000000000009 (passes), geovr's 0.0999…98
        (9, 10, 0.9, 0.8),  # the same: the released scorer gives 0.8
        (11, 10, 0.9, 0.8),  # |11-10|/10 is 0.1 exactly too
        (1.1, 1, 0.9, 0.8),  # |1.1-1|/1 is 0.10000000000000009: equal to lmms-eval's bound, above geovr's
        (8, 10, 0.6, 0.6),  # rel 0.2 vs 1-0.8 = 0.19999999999999996 under both: θ=0.8 fails
        (19, 20, 1.0, 1.0),  # rel 0.05 < 1-0.95 = 0.050000000000000044 under both
        (2.01, 2, 1.0, 1.0),
        (10, 2, 0.0, 0.0),
        (None, 4, 0.0, 0.0),
        (float("nan"), 4, 0.0, 0.0),
        (0, 0, 1.0, 1.0),
        (1, 0, 0.0, 0.0),
    ],
)
def test_mean_relative_accuracy(pred, target, lmms, geovr):
    assert mean_relative_accuracy(pred, target, protocol="lmms-eval") == pytest.approx(lmms, abs=1e-12)
    assert mean_relative_accuracy(pred, target, protocol="geovr") == pytest.approx(geovr, abs=1e-12)


def test_geovr_thresholds_as_the_released_scorer_builds_them():
    assert GEOVR_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    # the only θ whose float differs from lmms-eval's linspace, and the reason 9 vs 10 scores 0.8
    differ = [i for i, (a, b) in enumerate(zip(GEOVR_THRESHOLDS, THRESHOLDS, strict=False)) if a != float(b)]
    assert differ == [8] and 1.0 - GEOVR_THRESHOLDS[8] < 0.1 < 1.0 - float(THRESHOLDS[8])


def _released_mra(pred, gt):
    """The released scorer's numerical rule, restated independently from its description: float() of
    both, relative error (0 / inf for a zero target), count of θ in round(0.5 + 0.05 i, 2) with
    rel < 1 - θ, divided by 10; a failed float() scores 0."""
    try:
        y_hat, y = float(pred), float(gt)
    except (TypeError, ValueError):
        return 0.0
    rel = (0.0 if y_hat == 0 else float("inf")) if y == 0 else abs(y_hat - y) / y
    return sum(rel < 1.0 - t for t in [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]) / 10.0


def test_geovr_mra_matches_released_rule_on_a_grid():
    import numpy as np

    rng = np.random.default_rng(0)
    gts = [1, 2, 3, 4, 5, 7, 10, 12, 20, 25, 100, 0.5, 1.5, 2.25, 3.7]
    preds = [round(g * f, k) for g in gts for f in np.linspace(0.3, 1.7, 57) for k in (0, 1, 2)]
    preds += list(rng.uniform(0, 30, 300))
    for g in gts:
        for p in preds:
            assert score_answer(str(p), str(g), multiple_choice=False, protocol="geovr")[1] == _released_mra(p, g)
    for text in ["nan", "inf", "-inf", "1_0", " 1e1 ", "ten", "", "10 m"]:
        assert score_answer(text, "10", multiple_choice=False, protocol="geovr")[1] == _released_mra(text.strip(), 10)


def test_mra_rejects_unknown_protocol():
    with pytest.raises(ValueError, match="lmms-eval, geovr"):
        mean_relative_accuracy(1, 1, protocol="vsi")


@pytest.mark.parametrize(
    "text,value",
    [
        ("3", 3.0),
        ("3.0", 3.0),
        ("There are 3 boxes.", 3.0),
        ("Three.", 3.0),
        ("three chairs", 3.0),
        ("twenty-one", 21.0),
        ("three hundred and twenty-one", 321.0),
        ("two thousand five", 2005.0),
        ("one apple, room 2", 1.0),
        ("room 2, one apple", 2.0),
        ("-3.5 m", -3.5),
        ("about 2.75m", 2.75),
        ("hundred", 100.0),
        ("", None),
        ("   ", None),
        ("no idea", None),
        (None, None),
        ("1,500", 1.0),
        ("ten and a half", 10.0),
    ],
)
def test_extract_number(text, value):
    assert extract_number(text) == value


@pytest.mark.parametrize(
    "response,lmms,geovr",
    [
        ("A", "A", "A"),
        ("A.", "A", "A"),
        ("a. chair", "a", "a"),
        (" A", "", "A"),
        ("B) sofa", "B)", "B"),
        ("", "", ""),
        ("A.\n", "A.", "A"),
    ],
)
def test_parse_choice(response, lmms, geovr):
    assert parse_choice(response, protocol="lmms-eval") == lmms
    assert parse_choice(response, protocol="geovr") == geovr


def test_parse_number_protocols_differ():
    assert parse_number("3 chairs", protocol="lmms-eval") == 3.0
    assert parse_number("3 chairs", protocol="geovr") is None
    assert parse_number(" 2.5\n", protocol="geovr") == 2.5
    assert parse_number("four", protocol="geovr") is None


def test_score_answer_choice_case():
    assert score_answer("b", "B", multiple_choice=True, protocol="lmms-eval") == ("b", 1.0)
    assert score_answer("b", "B", multiple_choice=True, protocol="geovr") == ("b", 0.0)
    # the released scorer compares the first character with the whole stripped ground truth
    assert score_answer("A. chair", " A ", multiple_choice=True, protocol="geovr") == ("A", 1.0)
    assert score_answer("A", "A.", multiple_choice=True, protocol="geovr") == ("A", 0.0)
    assert score_answer("unparsable", "4", multiple_choice=False, protocol="lmms-eval") == (None, 0.0)


def _doc(i, qt, gt, options=None):
    return {
        "id": str(i),
        "dataset": "scannet",
        "scene_name": f"s{i}",
        "question_type": qt,
        "question": "q?",
        "options": options,
        "ground_truth": gt,
    }


OPTS = ["A. a", "B. b", "C. c", "D. d"]
HAND = [  # (doc, response, lmms-eval score, geovr score)
    (_doc(1, "object_counting", "4"), "5", 0.6, 0.5),
    (_doc(2, "object_counting", "4"), "four", 1.0, 0.0),
    (_doc(3, "object_abs_distance", "2"), "3", 0.1, 0.0),
    (_doc(4, "object_size_estimation", "100"), "It is about 90 cm", 0.9, 0.0),
    (_doc(5, "room_size_estimation", "20"), " 20 ", 1.0, 1.0),
    (_doc(6, "object_rel_distance", "B", OPTS), "b", 1.0, 0.0),
    (_doc(7, "object_rel_direction_easy", "A", OPTS), "A.", 1.0, 1.0),
    (_doc(8, "object_rel_direction_easy", "C", OPTS), "C", 1.0, 1.0),
    (_doc(9, "object_rel_direction_medium", "B", OPTS), "A", 0.0, 0.0),
    (_doc(10, "object_rel_direction_hard", "D", OPTS), "D. right", 1.0, 1.0),
    (_doc(11, "route_planning", "C", OPTS), "", 0.0, 0.0),
    (_doc(12, "obj_appearance_order", "A", OPTS), "unsure", 0.0, 0.0),
    (_doc(13, "obj_appearance_order", "A", OPTS), "A", 1.0, 1.0),
]


@pytest.mark.parametrize("protocol,column", [("lmms-eval", 2), ("geovr", 3)])
def test_per_question_scores(protocol, column):
    from geovr.eval.vsibench import score_question

    for row in HAND:
        assert score_question(row[0], row[1], protocol=protocol)[1] == pytest.approx(row[column], abs=1e-12), row


def test_score_lmms_eval_hand_built():
    docs, preds = [r[0] for r in HAND], [r[1] for r in HAND]
    s = score(docs, preds, protocol="lmms-eval")
    assert list(s) == [*TASKS, "overall"]
    expected = {
        "object_counting": 80.0,
        "object_abs_distance": 10.0,
        "object_size_estimation": 90.0,
        "room_size_estimation": 100.0,
        "object_rel_distance": 100.0,
        "object_rel_direction": 200.0 / 3,  # mean of easy 1.0, medium 0.0, hard 1.0
        "route_planning": 0.0,
        "obj_appearance_order": 50.0,
    }
    for k, v in expected.items():
        assert s[k] == pytest.approx(v, abs=1e-9), k
    assert s["overall"] == pytest.approx(sum(expected.values()) / 8, abs=1e-9)
    assert s["overall"] == pytest.approx(62.083333333, abs=1e-6)


def test_score_geovr_hand_built():
    docs, preds = [r[0] for r in HAND], [r[1] for r in HAND]
    s = score(docs, preds, protocol="geovr")
    expected = {
        "object_counting": 25.0,
        "object_abs_distance": 0.0,
        "object_size_estimation": 0.0,
        "room_size_estimation": 100.0,
        "object_rel_distance": 0.0,
        "object_rel_direction": 75.0,  # 3 of 4 pooled
        "route_planning": 0.0,
        "obj_appearance_order": 50.0,
    }
    for k, v in expected.items():
        assert s[k] == pytest.approx(v, abs=1e-9), k
    assert s["overall"] == pytest.approx(31.25, abs=1e-9)


def test_lmms_eval_absent_tasks_are_nan_and_excluded_from_overall():
    s = aggregate(["object_counting", "route_planning"], [0.5, 1.0], protocol="lmms-eval")
    assert s["object_counting"] == 50.0 and s["route_planning"] == 100.0
    assert math.isnan(s["room_size_estimation"])
    assert s["overall"] == 75.0


def test_geovr_overall_is_sum_of_8_tasks_over_8():
    # the released scorer: an absent task scores 0 and still counts in the divisor 8
    s = aggregate(["object_counting", "route_planning"], [0.5, 1.0], protocol="geovr")
    assert s["object_counting"] == 50.0 and s["route_planning"] == 100.0
    assert s["room_size_estimation"] == 0.0
    assert s["overall"] == pytest.approx((50.0 + 100.0) / 8, abs=1e-12)


def test_geovr_overall_hand_computed():
    """Unequal task sizes: per-task means first, then the mean of the 8 tasks (not of the questions);
    the direction levels pooled into one task; 9 vs 10 scoring 0.8."""
    rows = [
        (_doc(1, "object_counting", "10"), "9"),  # 0.8
        (_doc(2, "object_counting", "10"), "10"),  # 1.0
        (_doc(3, "object_counting", "10"), "5"),  # rel 0.5: 0.0
        (_doc(4, "object_abs_distance", "2.0"), "2.2"),  # rel 0.10000000000000009: 0.8
        (_doc(5, "object_size_estimation", "50"), "60"),  # rel 0.2 vs 0.19999999999999996: 0.6
        (_doc(6, "room_size_estimation", "20"), "nan"),  # 0.0
        (_doc(7, "room_size_estimation", "20"), "19"),  # rel 0.05 vs 0.050000000000000044: 1.0
        (_doc(8, "object_rel_distance", "A", OPTS), "A"),
        (_doc(9, "object_rel_direction_easy", "A", OPTS), "A"),
        (_doc(10, "object_rel_direction_easy", "B", OPTS), "A"),
        (_doc(11, "object_rel_direction_hard", "C", OPTS), "C"),
        (_doc(12, "object_rel_direction_medium", "D", OPTS), "D"),
        (_doc(13, "route_planning", "B", OPTS), "b"),
        (_doc(14, "obj_appearance_order", "C", OPTS), " C. the chair"),
    ]
    s = score([r[0] for r in rows], [r[1] for r in rows], protocol="geovr")
    expected = {
        "object_counting": 60.0,
        "object_abs_distance": 80.0,
        "object_size_estimation": 60.0,
        "room_size_estimation": 50.0,
        "object_rel_distance": 100.0,
        "object_rel_direction": 75.0,
        "route_planning": 0.0,
        "obj_appearance_order": 100.0,
    }
    for k, v in expected.items():
        assert s[k] == pytest.approx(v, abs=1e-9), k
    assert s["overall"] == pytest.approx(525.0 / 8, abs=1e-9)  # 65.625; a mean over the 14 questions would be 65.71
    # lmms-eval on the same set: direction = mean of level means (0.5, 1, 1); 9 vs 10 scores 0.9
    lm = score([r[0] for r in rows], [r[1] for r in rows], protocol="lmms-eval")
    assert lm["object_counting"] == pytest.approx(100 * 2.0 / 3, abs=1e-9)  # 0.9, 1.0 and 0.1 (rel 0.5 <= 0.5)
    assert lm["object_rel_direction"] == pytest.approx(250.0 / 3, abs=1e-9)


def test_score_errors():
    with pytest.raises(ValueError, match="2 docs but 1"):
        score([HAND[0][0], HAND[1][0]], ["1"], protocol="geovr")
    with pytest.raises(DataError, match="object_rel_direction_easy"):
        score([_doc(1, "object_direction", "A", OPTS)], ["A"], protocol="geovr")


def test_task_counts():
    c = task_counts([r[0]["question_type"] for r in HAND])
    assert c["object_rel_direction"] == 4 and c["object_counting"] == 2 and sum(c.values()) == len(HAND)
