"""Record fields are type-checked at load with ``file:line``: video_qa training records, VSI-Bench
evaluation records, QA predictions; JSON lines that are not objects."""

from __future__ import annotations

import json

import pytest

from geovr.data.jsonl import iter_jsonl
from geovr.data.video_qa import load_records
from geovr.errors import DataError, GeovrError
from geovr.eval.vsibench import load_docs, score

REC = {
    "id": 7,
    "dataset": "scannet",
    "scene_name": "scene0001_00",
    "question_type": "route_planning",
    "question": "Route?",
    "options": ["A. left", "B. right"],
    "ground_truth": "A",
}
NUM = dict(REC, id=8, question_type="object_abs_distance", options=None, ground_truth="2.5")

BAD = [
    ({"ground_truth": None}, "'ground_truth' must be a string or a finite number, got null"),
    ({"ground_truth": ["A"]}, "'ground_truth' must be a string or a finite number, got a list"),
    ({"ground_truth": {"a": 1}}, "'ground_truth' must be a string or a finite number, got an object"),
    ({"question": 3}, "'question' must be a string, got a number 3"),
    ({"question": None}, "'question' must be a string, got null"),
    ({"options": "A. left B. right"}, "'options' must be null or a list of strings"),
    ({"options": ["A. left", 2]}, "'options' must be null or a list of strings"),
    ({"question_type": ["route_planning"]}, "'question_type' must be a string"),
    ({"id": None}, "'id' must be a string or an integer, got null"),
]
BAD_NUMERIC = [
    ({"ground_truth": "-2"}, "must be a finite number > 0, got '-2'"),
    ({"ground_truth": -2.0}, "must be a finite number > 0, got -2.0"),
    ({"ground_truth": 0}, "must be a finite number > 0, got 0"),
    ({"ground_truth": "nan"}, "must be a finite number > 0, got 'nan'"),
    ({"ground_truth": "inf"}, "must be a finite number > 0, got 'inf'"),
    ({"ground_truth": "two"}, "must be a number, got 'two'"),
]


def write(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("change, message", BAD)
def test_vsibench_record_types_name_file_and_line(tmp_path, change, message):
    write(tmp_path / "test.jsonl", REC, {**REC, "id": 9, **change})
    with pytest.raises(DataError) as err:
        load_docs(tmp_path)
    assert "test.jsonl:2: " in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("change, message", BAD_NUMERIC)
def test_numerical_ground_truth_must_be_finite_and_positive(tmp_path, change, message):
    write(tmp_path / "test.jsonl", NUM, {**NUM, "id": 9, **change})
    with pytest.raises(DataError) as err:
        load_docs(tmp_path)
    assert "test.jsonl:2: 'ground_truth' of a numerical question" in str(err.value) and message in str(err.value)
    write(tmp_path / "train.jsonl", NUM, {**NUM, "id": 9, **change})
    with pytest.raises(DataError, match=r"train.jsonl:2: 'ground_truth' of a numerical question"):
        load_records(tmp_path / "train.jsonl")


def test_a_negative_ground_truth_no_longer_scores_every_answer(tmp_path):
    """Before: a ground truth of -2 gave every answer an MRA of 100; now the record is refused at load."""
    write(tmp_path / "test.jsonl", dict(NUM, ground_truth=-2))
    with pytest.raises(DataError, match="> 0"):
        load_docs(tmp_path)


@pytest.mark.parametrize("change, message", BAD)
def test_video_qa_record_types_name_file_and_line(tmp_path, change, message):
    write(tmp_path / "a.jsonl", REC, REC, dict(REC, **change))
    with pytest.raises(DataError) as err:
        load_records(tmp_path / "a.jsonl")
    assert "a.jsonl:3: " in str(err.value) and message in str(err.value)


def test_valid_records_still_load(tmp_path):
    write(tmp_path / "test.jsonl", REC, NUM, dict(NUM, id=10, ground_truth=3, scene_name=41069025))
    docs = load_docs(tmp_path)
    assert [d["ground_truth"] for d in docs] == ["A", "2.5", "3"] and docs[2]["scene_name"] == "41069025"
    assert len(load_records(tmp_path / "test.jsonl")) == 3


@pytest.mark.parametrize(
    "line, kind", [("[1, 2]", "a list"), ('"text"', "a string"), ("3", "a number"), ("null", "null")]
)
def test_a_json_line_that_is_not_an_object(tmp_path, line, kind):
    (tmp_path / "test.jsonl").write_text(json.dumps(REC) + "\n" + line + "\n")
    with pytest.raises(DataError, match=rf"test.jsonl:2: expected a JSON object .*got {kind}"):
        list(iter_jsonl(tmp_path / "test.jsonl"))
    with pytest.raises(DataError, match="test.jsonl:2: expected a JSON object"):
        load_docs(tmp_path)
    with pytest.raises(DataError, match="test.jsonl:2: expected a JSON object"):
        load_records(tmp_path / "test.jsonl")


def test_a_non_string_prediction_is_an_error(tmp_path):
    docs = load_docs(write(tmp_path / "test.jsonl", REC).parent)
    with pytest.raises(DataError, match=r"prediction 0 \(doc '7'\) must be a string, got int 1"):
        score(docs, [1], protocol="geovr")
    from geovr.eval.qa import _answered

    write(
        tmp_path / "predictions.jsonl",
        {"id": "7", "prompt": "p", "response": "A"},
        {"id": "7", "prompt": "p", "response": 4},
    )
    with pytest.raises(DataError, match=r"predictions.jsonl:2: the prediction 'response' must be a string, got int 4"):
        _answered(tmp_path, {"7": "p"})
    (tmp_path / "predictions.jsonl").write_text(json.dumps({"id": "7", "prompt": "p", "response": "A"}) + '\n{"id": ')
    assert _answered(tmp_path, {"7": "p"})["7"]["response"] == "A"  # a write cut short by a crash is dropped


def test_backbone_answers_must_be_strings():
    import torch

    from geovr.eval.qa import _answer

    class Backbone:
        def generate(self, batch, **kw):
            return [None]

    doc = dict(REC, id="7")
    with pytest.raises(GeovrError, match="backbone.generate returned NoneType None for question '7'"):
        _answer(
            Backbone(),
            [doc],
            lambda d: (torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)),
            {"7": "p"},
            {},
            0,
            None,
        )
