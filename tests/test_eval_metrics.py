"""VSI-Bench metrics and scoring under both protocols, on hand-built prediction lists."""

from __future__ import annotations

import math

import pytest

from geovr.errors import DataError
from geovr.eval.metrics import (
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
    assert all(abs(b - a - 0.05) < 1e-12 for a, b in zip(THRESHOLDS, THRESHOLDS[1:]))


@pytest.mark.parametrize(
    "pred,target,lmms,geovr",
    [
        (4, 4, 1.0, 1.0),
        (5, 4, 0.6, 0.5),      # |5-4|/4 = 0.25 == 1-0.75 exactly: counted by <=, not by <
        (1.5, 1, 0.1, 0.0),    # ratio 0.5 == 1-0.5: only θ=0.5 and only with <=
        (0.5, 1, 0.1, 0.0),
        (3.0, 5.0, 0.3, 0.2),  # ratio 0.4 == 1-0.6: θ ∈ {0.5, 0.55, 0.6} with <=, {0.5, 0.55} with <
        (90, 100, 0.9, 0.9),   # 1-0.9 is 0.10000000000000009 in floating point, so 0.1 passes either way
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


def test_mra_rejects_unknown_protocol():
    with pytest.raises(ValueError, match="lmms-eval, geovr"):
        mean_relative_accuracy(1, 1, protocol="vsi")


@pytest.mark.parametrize(
    "text,value",
    [
        ("3", 3.0), ("3.0", 3.0), ("There are 3 boxes.", 3.0), ("Three.", 3.0), ("three chairs", 3.0),
        ("twenty-one", 21.0), ("three hundred and twenty-one", 321.0), ("two thousand five", 2005.0),
        ("one apple, room 2", 1.0), ("room 2, one apple", 2.0), ("-3.5 m", -3.5), ("about 2.75m", 2.75),
        ("hundred", 100.0), ("", None), ("   ", None), ("no idea", None), (None, None), ("1,500", 1.0),
        ("ten and a half", 10.0),
    ],
)
def test_extract_number(text, value):
    assert extract_number(text) == value


@pytest.mark.parametrize(
    "response,lmms,geovr",
    [("A", "A", "A"), ("A.", "A", "A"), ("a. chair", "a", "a"), (" A", "", "A"), ("B) sofa", "B)", "B"),
     ("", "", ""), ("A.\n", "A.", "A")],
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
    assert score_answer("unparsable", "4", multiple_choice=False, protocol="lmms-eval") == (None, 0.0)


def _doc(i, qt, gt, options=None):
    return {"id": str(i), "dataset": "scannet", "scene_name": f"s{i}", "question_type": qt, "question": "q?",
            "options": options, "ground_truth": gt}


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
    expected = {"object_counting": 80.0, "object_abs_distance": 10.0, "object_size_estimation": 90.0,
                "room_size_estimation": 100.0, "object_rel_distance": 100.0,
                "object_rel_direction": 200.0 / 3,  # mean of easy 1.0, medium 0.0, hard 1.0
                "route_planning": 0.0, "obj_appearance_order": 50.0}
    for k, v in expected.items():
        assert s[k] == pytest.approx(v, abs=1e-9), k
    assert s["overall"] == pytest.approx(sum(expected.values()) / 8, abs=1e-9)
    assert s["overall"] == pytest.approx(62.083333333, abs=1e-6)


def test_score_geovr_hand_built():
    docs, preds = [r[0] for r in HAND], [r[1] for r in HAND]
    s = score(docs, preds, protocol="geovr")
    expected = {"object_counting": 25.0, "object_abs_distance": 0.0, "object_size_estimation": 0.0,
                "room_size_estimation": 100.0, "object_rel_distance": 0.0,
                "object_rel_direction": 75.0,  # 3 of 4 pooled
                "route_planning": 0.0, "obj_appearance_order": 50.0}
    for k, v in expected.items():
        assert s[k] == pytest.approx(v, abs=1e-9), k
    assert s["overall"] == pytest.approx(31.25, abs=1e-9)


def test_absent_tasks_are_nan_and_excluded_from_overall():
    s = aggregate(["object_counting", "route_planning"], [0.5, 1.0], protocol="geovr")
    assert s["object_counting"] == 50.0 and s["route_planning"] == 100.0
    assert math.isnan(s["room_size_estimation"])
    assert s["overall"] == 75.0


def test_score_errors():
    with pytest.raises(ValueError, match="2 docs but 1"):
        score([HAND[0][0], HAND[1][0]], ["1"], protocol="geovr")
    with pytest.raises(DataError, match="object_rel_direction_easy"):
        score([_doc(1, "object_direction", "A", OPTS)], ["A"], protocol="geovr")


def test_task_counts():
    c = task_counts([r[0]["question_type"] for r in HAND])
    assert c["object_rel_direction"] == 4 and c["object_counting"] == 2 and sum(c.values()) == len(HAND)
