"""The shared QA loop (:func:`geovr.eval.qa.run_qa`) with a scripted answerer: exact scores, sharding
through accelerate's split, resume rules, and error paths."""

from __future__ import annotations

import json

import pytest

import geovr.eval.qa as qa
from geovr.errors import DataError, GeovrError, UsageError
from geovr.eval.report import read_jsonl
from geovr.eval.vsibench import TASKS
from geovr.testing.multiprocess import launch

OPTS = ["A. a", "B. b", "C. c", "D. d"]


def _docs():
    rows = [
        ("object_counting", "4"),
        ("object_abs_distance", "2.5"),
        ("object_size_estimation", "80"),
        ("room_size_estimation", "30"),
        ("object_rel_distance", "B"),
        ("object_rel_direction_easy", "A"),
        ("object_rel_direction_medium", "C"),
        ("object_rel_direction_hard", "D"),
        ("route_planning", "B"),
        ("obj_appearance_order", "C"),
    ]
    return [
        {
            "id": f"q{i}",
            "dataset": "synthetic",
            "scene_name": "s",
            "question_type": qt,
            "question": f"Q{i}?",
            "options": None if gt[0].isdigit() else OPTS,
            "ground_truth": gt,
        }
        for i, (qt, gt) in enumerate(rows)
    ]


class Scripted:
    """Answers from a table (``id -> text``); records what it was asked."""

    def __init__(self, answers):
        self.answers, self.asked, self.prompts = answers, [], []

    def generate(self, batch, **kw):
        assert batch.frames.shape[1:] == (2, 3, 8, 8) and batch.options == [None] * batch.batch_size
        self.asked += batch.sample_ids
        self.prompts += batch.questions
        return [self.answers[i] for i in batch.sample_ids]


def _frames(doc):
    import torch

    return torch.zeros(2, 3, 8, 8), torch.arange(2)


def _run(bb, out, protocol="lmms-eval", **kw):
    return qa.run_qa(
        bb,
        _docs(),
        _frames,
        evaluator="test",
        protocol=protocol,
        output_dir=out,
        generation=qa.generation_kwargs(protocol),
        progress=False,
        **kw,
    )


def test_exact_scores_and_prompts(tmp_path):
    perfect = {d["id"]: d["ground_truth"] for d in _docs()}
    bb = Scripted(perfect)
    s = _run(bb, tmp_path, batch_size=4)
    assert s == {**dict.fromkeys(TASKS, 100.0), "overall": 100.0}
    assert bb.prompts[0].startswith("These are frames of a video.\nQ0?")
    # half the counting answers as words: lmms-eval parses them, geovr does not
    words = dict(perfect, q0="four")
    lm = _run(Scripted(words), tmp_path / "lm")
    gv = _run(Scripted(words), tmp_path / "gv", protocol="geovr")
    assert lm["object_counting"] == 100.0 and gv["object_counting"] == 0.0
    assert gv["overall"] == pytest.approx(100.0 * 7 / 8)


class FakeState:
    """Process ``index`` of ``n``; splitting is accelerate's own ``split_between_processes``."""

    def __init__(self, index, n):
        self.process_index, self.num_processes = index, n
        self.is_main_process = index == 0

    def split_between_processes(self, inputs):
        from accelerate import PartialState

        return PartialState.split_between_processes(self, inputs)

    def wait_for_everyone(self):
        pass


def test_sharding_splits_work_and_main_merges(tmp_path, monkeypatch):
    answers = {d["id"]: d["ground_truth"] for d in _docs()}
    workers = [Scripted(answers), Scripted(answers)]
    # rank 1 finishes first (its shard is written to predictions.rank1.jsonl), then rank 0 merges
    monkeypatch.setattr(qa, "_partial_state", lambda: FakeState(1, 2))
    _run(workers[1], tmp_path)
    assert (tmp_path / "predictions.rank1.jsonl").is_file() and not (tmp_path / "results.json").exists()
    monkeypatch.setattr(qa, "_partial_state", lambda: FakeState(0, 2))
    s = _run(workers[0], tmp_path)
    assert workers[0].asked == [f"q{i}" for i in range(5)] and workers[1].asked == [f"q{i}" for i in range(5, 10)]
    assert [r["id"] for r in read_jsonl(tmp_path / "predictions.jsonl")] == [f"q{i}" for i in range(10)]
    assert not list(tmp_path.glob("predictions.rank*.jsonl"))
    assert s["overall"] == 100.0 and json.loads((tmp_path / "results.json").read_text())["num_questions"] == 10


def test_resume_rules(tmp_path):
    answers = {d["id"]: "1" for d in _docs()}
    _run(Scripted(answers), tmp_path)
    again = Scripted(answers)
    _run(again, tmp_path)
    assert again.asked == []
    # other settings (protocol, decoding, frames) never mix into the same directory
    with pytest.raises(UsageError, match=r"other settings \(generation, protocol, seed differ"):
        _run(Scripted(answers), tmp_path, protocol="geovr")
    with pytest.raises(UsageError, match=r"frame_size"):
        _run(Scripted(answers), tmp_path, frame_size=[4, 4])
    # a crash mid-line leaves a truncated last row: it is dropped and that question asked again
    path = tmp_path / "predictions.jsonl"
    path.write_text(path.read_text()[:-20])
    last = Scripted(answers)
    _run(last, tmp_path)
    assert last.asked == ["q9"]
    rows = read_jsonl(path)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(10)]  # none lost, none duplicated


def test_errors(tmp_path):
    docs = _docs()
    with pytest.raises(DataError, match="not unique"):
        qa.run_qa(
            Scripted({}),
            docs + docs[:1],
            _frames,
            evaluator="t",
            protocol="geovr",
            output_dir=tmp_path,
            generation={},
            progress=False,
        )

    class Short(Scripted):
        def generate(self, batch, **kw):
            return []

    with pytest.raises(GeovrError, match="returned 0 answers for 2"):
        _run(Short({}), tmp_path / "short", batch_size=2)


def test_generation_kwargs_and_seed():
    assert qa.generation_kwargs("lmms-eval") == {"max_new_tokens": 16, "do_sample": False}
    assert qa.generation_kwargs("geovr", max_new_tokens=64, temperature=0.5) == {
        "max_new_tokens": 64,
        "do_sample": True,
        "temperature": 0.5,
        "top_p": 0.8,
        "top_k": 20,
    }
    assert qa.batch_seed(0, "a") == qa.batch_seed(0, "a") != qa.batch_seed(1, "a")


def test_compare_labels_do_not_collide(tmp_path):
    from geovr.eval.report import load_results

    answers = {d["id"]: d["ground_truth"] for d in _docs()}
    base = tmp_path / "base_run" / "eval" / "vsibench-lmms-eval"
    _run(Scripted(answers), base)
    tuned = tmp_path / "tuned_run" / "eval" / "vsibench-lmms-eval"
    _run(Scripted({k: "0" for k in answers}), tuned, compare=str(base))
    assert load_results(base)["label"] == "vsibench-lmms-eval"
    assert (tuned / "results.png").stat().st_size > 1000
    with pytest.raises(DataError, match="results.json not found"):
        load_results(tmp_path)


SCRIPT = """
import json, sys
import torch
torch.set_num_threads(1)
from accelerate.state import PartialState
import geovr.eval.qa as qa

docs = [{"id": f"q{i}", "dataset": "d", "scene_name": "s", "question_type": "object_counting",
         "question": f"How many {i}?", "options": None, "ground_truth": str(i + 1)} for i in range(11)]
asked = []

class Half:
    def generate(self, batch, **kw):
        asked.extend(batch.sample_ids)
        return [str(int(i[1:]) + 1) if int(i[1:]) % 2 == 0 else "none" for i in batch.sample_ids]

scores = qa.run_qa(Half(), docs, lambda d: (torch.zeros(1, 3, 4, 4), torch.zeros(1)), evaluator="mp",
                   protocol="lmms-eval", output_dir=sys.argv[1], generation={}, batch_size=2, progress=False)
state = PartialState()  # the process state run_qa set up (shared singleton)
rank = state.process_index
json.dump({"asked": asked, "scores": scores, "world": state.num_processes},
          open(f"{sys.argv[1]}/rank{rank}.json", "w"))
state.destroy_process_group()  # a live gloo group can abort the interpreter at exit
"""


@pytest.mark.slow
def test_two_gloo_processes_split_and_merge(tmp_path):
    """Launched like torchrun: the two ranks answer disjoint halves, rank 0 merges, both get the scores."""
    out = tmp_path / "out"
    out.mkdir()
    launch(SCRIPT, tmp_path, out, timeout=180, name="mp_eval.py")
    r0, r1 = (json.loads((out / f"rank{k}.json").read_text()) for k in range(2))
    assert r0["world"] == r1["world"] == 2
    assert r0["asked"] == [f"q{i}" for i in range(6)] and r1["asked"] == [f"q{i}" for i in range(6, 11)]
    assert [r["id"] for r in read_jsonl(out / "predictions.jsonl")] == [f"q{i}" for i in range(11)]
    assert not list(out.glob("predictions.rank*.jsonl"))
    expected = 100.0 * 6 / 11  # the even ids are answered exactly, the odd ones are unparsable
    assert r0["scores"]["object_counting"] == pytest.approx(expected)
    assert r1["scores"]["object_counting"] == pytest.approx(expected)
    assert json.loads((out / "results.json").read_text())["num_questions"] == 11
