"""The ``synthetic_qa`` evaluator: questions from a registered dataset, scored like VSI-Bench."""

from __future__ import annotations

import json

import pytest

from geovr import hookimpl
from geovr.eval.configs import SyntheticQAConfig
from geovr.eval.evaluators import build_synthetic_qa
from geovr.eval.vsibench import TASKS
from geovr.protocols import BuildContext
from geovr.testing import registered

QUESTIONS = [
    ("object_counting", "How many chairs?", None, "3"),
    ("room_size_estimation", "Room size?", None, "12.5"),
    ("object_rel_direction_medium", "Where is the lamp?", ["A. left", "B. right", "C. back"], "B"),
    ("route_planning", "Route?", ["A. turn left", "B. turn right"], "A"),
]


class QADataset:
    """Sample dicts (geovr.data.collate) carrying VSI-Bench question types; counts ``__getitem__`` calls."""

    def __init__(self, n=4):
        import torch

        self.n, self.reads = n, 0
        self.frames = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        qt, q, opts, ans = QUESTIONS[i % len(QUESTIONS)]
        return {
            "frames": self.frames,
            "frame_indices": [0, 5, 10],
            "question": q,
            "options": opts,
            "answer": ans,
            "question_type": qt,
            "scene_id": f"room{i // 2}",
            "sample_id": f"syn{i}",
        }


class QAPlugin:
    @staticmethod
    @hookimpl
    def register_datasets(register):
        register("qa_rooms", lambda config, context: QADataset(**config))


class Answerer:
    def __init__(self, answers):
        self.answers, self.seen = answers, []

    def generate(self, batch, **kw):
        self.seen.append((batch.frames.shape, batch.frame_indices.tolist(), list(batch.questions)))
        return [next(self.answers[line] for line in q.split("\n") if line in self.answers) for q in batch.questions]


def test_synthetic_qa_scores_dataset_questions(tmp_path):
    answers = {"How many chairs?": "three", "Room size?": "10", "Where is the lamp?": "B.", "Route?": "b"}
    cfg = SyntheticQAConfig(dataset="qa_rooms", dataset_options={"n": 4}, progress=False, batch_size=4)
    with registered(QAPlugin(), "qa-data", isolated=True):
        ev = build_synthetic_qa(cfg, BuildContext(seed=3))
        bb = Answerer(answers)
        s = ev.evaluate(bb, tmp_path)
    # lmms-eval: "three" → 3 exact; 10 vs 12.5 → |Δ|/12.5 = 0.2 ≤ 1-θ for θ ≤ 0.75 (1-0.8 is 0.19999999999999996
    # in floating point, as in lmms-eval) → 0.6; "B." → B; "b" ≠ A
    assert s == pytest.approx(
        {
            "object_counting": 100.0,
            "room_size_estimation": 60.0,
            "object_rel_direction": 100.0,
            "route_planning": 0.0,
            "overall": 65.0,
        }
    )
    shape, idx, prompts = bb.seen[0]
    assert tuple(shape) == (4, 3, 3, 16, 16) and idx[0] == [0, 5, 10]
    assert prompts[2].endswith(
        "Options:\nA. left\nB. right\nC. back\nAnswer with the option's letter from the given choices directly."
    )
    out = tmp_path / "synthetic_qa-lmms-eval"
    doc = json.loads((out / "results.json").read_text())
    assert doc["dataset"] == "qa_rooms" and doc["num_questions"] == 4
    # question counts, chance level per task (uniform guessing among the options; none for numerical
    # tasks) and the direction
    chance = {r["task"]: (r["n"], r["chance"]) for r in doc["tasks"]}
    assert chance["object_rel_direction"] == (1, pytest.approx(100 / 3)) and chance["route_planning"] == (1, 50.0)
    assert chance["object_counting"] == (1, None) and chance["overall"] == (4, None)
    assert doc["multiple_choice"] == {"n": 2, "score": 50.0, "chance": pytest.approx(100 * (1 / 3 + 1 / 2) / 2)}
    md = (out / "results.md").read_text()
    assert "higher is better" in md and "| route_planning | 1 | 0.00 | 50.00 |" in md and "chance 41.67" in md
    assert [r["id"] for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())] == [
        "syn0",
        "syn1",
        "syn2",
        "syn3",
    ]


def test_synthetic_qa_geovr_protocol_and_selection(tmp_path):
    answers = {"How many chairs?": "three", "Room size?": "12.5", "Where is the lamp?": "B.", "Route?": "A"}
    cfg = SyntheticQAConfig(
        dataset="qa_rooms",
        dataset_options={"n": 8},
        protocol="geovr",
        progress=False,
        question_types=["object_counting", "room_size_estimation"],
        limit=3,
    )
    with registered(QAPlugin(), "qa-data", isolated=True):
        s = build_synthetic_qa(cfg, BuildContext()).evaluate(Answerer(answers), tmp_path)
    # 3 questions kept (syn0 counting, syn1 room, syn4 counting); geovr cannot parse "three"; as the
    # released scorer, the 6 absent tasks score 0 and overall is the sum of the 8 tasks / 8
    expected = dict.fromkeys(TASKS, 0.0) | {"room_size_estimation": 100.0, "overall": 12.5}
    assert s == pytest.approx(expected)


def test_synthetic_rooms_with_tiny_qwen(tmp_path):
    qwen_testing = pytest.importorskip("geovr_plugin_qwen_vl.testing", reason="geovr-plugin-qwen-vl is not installed")
    import torch

    from geovr.data.configs import SyntheticRoomsConfig
    from geovr.data.synthetic.dataset import build as build_rooms
    from geovr.eval.vsibench import score

    torch.manual_seed(0)
    bb = qwen_testing.tiny_backbone("qwen2_5_vl")
    cfg = SyntheticQAConfig(
        dataset_options={"num_samples": 3, "num_frames": 2, "image_size": [32, 32]},
        max_new_tokens=2,
        batch_size=3,
        progress=False,
    )
    s = build_synthetic_qa(cfg, BuildContext()).evaluate(bb, tmp_path)
    out = tmp_path / "synthetic_qa-lmms-eval"
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    rooms = build_rooms(SyntheticRoomsConfig(**cfg.options()))
    truth = [rooms[i] for i in range(3)]
    assert [r["id"] for r in rows] == [t["sample_id"] for t in truth]
    assert [r["ground_truth"] for r in rows] == [t["answer"] for t in truth]
    docs = [{"question_type": t["question_type"], "ground_truth": t["answer"]} for t in truth]
    assert s == pytest.approx(
        {k: v for k, v in score(docs, [r["response"] for r in rows], protocol="lmms-eval").items() if v == v}
    )
    assert json.loads((out / "results.json").read_text())["dataset_options"]["seed"] == 12345


def test_vsibench_reads_a_synthesized_directory(tmp_path):
    """`geovr data synth` output (qa.jsonl + videos/<scene>.mp4) evaluated by ``vsibench`` with
    ``records``/``video_dir``: an answerer that knows the ground truth scores 100 on every task present."""
    from geovr.data.synthetic.cli import synthesize
    from geovr.eval.configs import VSIBenchConfig
    from geovr.eval.evaluators import build_vsibench
    from geovr.eval.vsibench import load_docs

    stats = synthesize(tmp_path / "synth", scenes=2, frames=4, size=(32, 48), seed=0, progress=False)
    docs = load_docs(tmp_path / "synth", "qa.jsonl")
    assert len(docs) == stats["questions"] > 4
    truth = {d["id"]: d["ground_truth"] for d in docs}

    class Oracle:
        def generate(self, batch, **kw):
            assert tuple(batch.frames.shape[1:]) == (3, 3, 32, 48)
            return [truth[i] for i in batch.sample_ids]

    cfg = VSIBenchConfig(
        data_dir=str(tmp_path / "synth"),
        records="qa.jsonl",
        video_dir="videos",
        num_frames=3,
        batch_size=8,
        progress=False,
    )
    s = build_vsibench(cfg, BuildContext()).evaluate(Oracle(), tmp_path / "out")
    assert s["overall"] == 100.0 and all(v == 100.0 for v in s.values())
