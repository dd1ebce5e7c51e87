"""End to end: a tiny VSI-format directory (videos written with PyAV) evaluated with the tiny Qwen
backbone under both protocols: outputs, resume, seeded sampling, errors, and the ``geovr eval`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geovr.data.video import write_video
from geovr.errors import DataError
from geovr.eval.configs import VSIBenchConfig
from geovr.eval.evaluators import build_vsibench
from geovr.eval.prompts import doc_prompt
from geovr.eval.report import read_jsonl
from geovr.eval.vsibench import TASKS, load_docs, score
from geovr.protocols import BuildContext

qwen_testing = pytest.importorskip(
    "geovr_plugin_qwen_vl.testing",
    reason="geovr-plugin-qwen-vl is not installed (pip install -e plugins/geovr-plugin-qwen-vl)",
)


OPTS = ["A. chair", "B. table", "C. sofa", "D. lamp"]
RECORDS = [
    ("object_counting", "How many chair(s) are in this room?", None, "3"),
    ("object_abs_distance", "What is the distance between the sofa and the lamp (in meters)?", None, "1.8"),
    ("object_size_estimation", "How long is the table (in centimeters)?", None, "120"),
    ("room_size_estimation", "What is the size of this room (in square meters)?", None, "21.5"),
    ("object_rel_distance", "Which object is closest to the door?", OPTS, "B"),
    ("object_rel_direction_easy", "Is the lamp left or right of the sofa?", ["A. left", "B. right"], "A"),
    ("object_rel_direction_hard", "Standing by the sofa facing the tv, where is the lamp?", OPTS, "C"),
    ("route_planning", "How do I get from the bed to the door?", OPTS, "D"),
    ("obj_appearance_order", "In which order do these objects first appear?", OPTS, "A"),
]


def make_vsi_dir(root, *, video_frames=6):
    """``root/test.jsonl`` + ``root/{dataset}/{scene}.mp4`` (two scenes, different sizes)."""
    rng = np.random.default_rng(0)
    scenes = [("scannet", "scene0000_00", (48, 64)), ("arkitscenes", "41069025", (64, 48))]
    for dataset, scene, (h, w) in scenes:
        frames = (rng.random((video_frames, h, w, 3)) * 255).astype(np.uint8)
        write_video(root / dataset / f"{scene}.mp4", frames)
    with open(root / "test.jsonl", "w") as f:
        for i, (qt, q, opts, gt) in enumerate(RECORDS):
            dataset, scene, _ = scenes[i % 2]
            f.write(
                json.dumps(
                    {
                        "id": i,
                        "dataset": dataset,
                        "scene_name": scene,
                        "question_type": qt,
                        "question": q,
                        "options": opts,
                        "ground_truth": gt,
                    }
                )
                + "\n"
            )
    return root


@pytest.fixture(scope="module")
def vsi_dir(tmp_path_factory):
    return make_vsi_dir(tmp_path_factory.mktemp("vsibench"))


@pytest.fixture(scope="module")
def backbone():
    import torch

    torch.manual_seed(0)
    return qwen_testing.tiny_backbone("qwen2_5_vl", max_new_tokens=4)


class CountingBackbone:
    """Delegates to a real backbone and counts the questions it was asked."""

    def __init__(self, inner):
        self.inner, self.asked, self.kwargs = inner, [], []

    def generate(self, batch, **kw):
        self.asked += list(batch.sample_ids)
        self.kwargs.append(kw)
        return self.inner.generate(batch, **kw)


def _evaluator(vsi_dir, **options):
    kw = {"num_frames": 2, "max_new_tokens": 2, "progress": False, **options}
    cfg = VSIBenchConfig(data_dir=str(vsi_dir), **kw)
    return build_vsibench(cfg, BuildContext(seed=7))


@pytest.mark.parametrize("protocol", ["lmms-eval", "geovr"])
def test_end_to_end_outputs(vsi_dir, backbone, tmp_path, protocol):
    bb = CountingBackbone(backbone)
    ev = _evaluator(vsi_dir, protocol=protocol, batch_size=5, frame_size=[48, 48])
    scores = ev.evaluate(bb, tmp_path)
    out = tmp_path / f"vsibench-{protocol}"
    rows = read_jsonl(out / "predictions.jsonl")
    docs = load_docs(vsi_dir)
    # asked video by video (each video decoded once): the scannet scene's questions, then arkitscenes'
    order = ["0", "2", "4", "6", "8", "1", "3", "5", "7"]
    assert [r["id"] for r in rows] == bb.asked == order
    docs = sorted(docs, key=lambda d: order.index(d["id"]))
    assert len(bb.kwargs) == 2  # 9 questions in batches of 5 (frames resized to one shape)
    for r, d in zip(rows, docs, strict=False):
        assert r["prompt"] == doc_prompt(d, protocol=protocol)
        assert isinstance(r["response"], str) and 0.0 <= r["score"] <= 1.0
    expected = score(docs, [r["response"] for r in rows], protocol=protocol)
    assert scores == pytest.approx(expected)
    assert set(scores) == {*TASKS, "overall"}
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == protocol and results["num_questions"] == len(docs)
    assert [t["task"] for t in results["tasks"]] == [*TASKS, "overall"]
    assert sum(t["n"] for t in results["tasks"][:-1]) == len(docs)
    assert "| object_rel_direction | 2 |" in (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 1000
    gen = bb.kwargs[0]
    if protocol == "lmms-eval":
        assert gen == {"max_new_tokens": 2, "do_sample": False}
    else:
        assert gen == {"max_new_tokens": 2, "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20}
    if protocol == "geovr":
        return
    # resume: nothing is asked again; dropping one row re-asks exactly that question
    again = CountingBackbone(backbone)
    assert ev.evaluate(again, tmp_path) == pytest.approx(scores) and again.asked == []
    lines = (out / "predictions.jsonl").read_text().splitlines()
    (out / "predictions.jsonl").write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    again = CountingBackbone(backbone)
    ev.evaluate(again, tmp_path)
    assert again.asked == [rows[3]["id"]]
    assert len(read_jsonl(out / "predictions.jsonl")) == len(docs)


def test_geovr_sampling_is_seeded_and_limit_applies(vsi_dir, backbone, tmp_path):
    assert _evaluator(vsi_dir, protocol="geovr", max_new_tokens=None).generation["max_new_tokens"] == 16
    ev = _evaluator(vsi_dir, protocol="geovr", limit=3, max_new_tokens=3, batch_size=3)
    ev.evaluate(backbone, tmp_path / "a")
    ev.evaluate(backbone, tmp_path / "b")
    a = read_jsonl(tmp_path / "a" / "vsibench-geovr" / "predictions.jsonl")
    b = read_jsonl(tmp_path / "b" / "vsibench-geovr" / "predictions.jsonl")
    assert len(a) == 3 and [r["response"] for r in a] == [r["response"] for r in b]


def test_compare_chart_and_question_types(vsi_dir, backbone, tmp_path):
    first = _evaluator(
        vsi_dir, output_subdir="base", question_types=["object_counting", "route_planning"], batch_size=2
    )
    s = first.evaluate(backbone, tmp_path)
    assert set(s) == {"object_counting", "route_planning", "overall"}  # absent tasks are left out
    second = _evaluator(
        vsi_dir,
        output_subdir="tuned",
        question_types=["object_counting", "route_planning"],
        compare=str(tmp_path / "base"),
        batch_size=2,
    )
    second.evaluate(backbone, tmp_path)
    assert (tmp_path / "tuned" / "results.png").stat().st_size > 1000
    doc = json.loads((tmp_path / "tuned" / "results.json").read_text())
    assert doc["scores"]["room_size_estimation"] is None


def test_missing_files_are_reported(tmp_path, backbone):
    with pytest.raises(DataError, match="not found"):
        _evaluator(tmp_path / "nope").evaluate(backbone, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither test.jsonl nor any"):
        _evaluator(tmp_path / "empty").evaluate(backbone, tmp_path)
    d = make_vsi_dir(tmp_path / "partial")
    (d / "scannet" / "scene0000_00.mp4").unlink()
    with pytest.raises(DataError, match=r"1 video\(s\).*scene0000_00.mp4"):
        _evaluator(d).evaluate(backbone, tmp_path)
    (d / "test.jsonl").write_text('{"id": 1, "question": "q"}\n')
    with pytest.raises(DataError, match="lacks dataset"):
        _evaluator(d).evaluate(backbone, tmp_path)


def test_cli_model_mode(vsi_dir, tmp_path, capsys):
    from geovr.cli.main import main

    ckpt = qwen_testing.cached_tiny_checkpoint("qwen2_5_vl")
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "--model",
            ckpt,
            "--evaluator",
            "vsibench",
            "--data",
            str(vsi_dir),
            "--output",
            str(out),
            "--json",
            "limit=2",
            "num_frames=2",
            "max_new_tokens=2",
            "progress=false",
            "protocol=geovr",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = json.loads(captured.out)
    saved = json.loads((out / "vsibench-geovr" / "results.json").read_text())
    assert saved["num_questions"] == 2
    assert printed["vsibench"]["overall"] == pytest.approx(saved["scores"]["overall"])

    # the same directory with other settings is refused (usage error) ...
    assert (
        main(
            [
                "eval",
                "--model",
                ckpt,
                "--data",
                str(vsi_dir),
                "--output",
                str(out),
                "num_frames=3",
                "max_new_tokens=2",
                "protocol=geovr",
                "limit=1",
                "progress=false",
            ]
        )
        == 2
    )
    assert "other settings (num_frames differ" in capsys.readouterr().err
    # ... and 3 frames exceed a backbone built with max_inference_frames=2: the backbone's DataError is a
    # runtime failure
    assert (
        main(
            [
                "eval",
                "--model",
                ckpt,
                "--data",
                str(vsi_dir),
                "--output",
                str(tmp_path / "o2"),
                "num_frames=3",
                "--backbone-option",
                "max_inference_frames=2",
                "limit=1",
                "progress=false",
            ]
        )
        == 1
    )
    assert "max_inference_frames=2" in capsys.readouterr().err
    assert main(["eval", "--model", ckpt, "--data", str(vsi_dir), "--backbone-option", "max_frame=2"]) == 2
    assert "did you mean 'max_frames'" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert main(["eval", "--model", ckpt, "--evaluator", "vsibnch", "--data", str(vsi_dir)]) == 2
    assert main(["eval", "--model", ckpt, "--evaluator", "vsibench", "--data", str(vsi_dir), "num_frame=3"]) == 2
    assert (
        main(
            [
                "eval",
                "--model",
                ckpt,
                "--evaluator",
                "vsibench",
                "--data",
                str(tmp_path / "missing"),
                "--output",
                str(out),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "did you mean 'vsibench'" in err.lower() and "num_frames" in err and "missing" in err


def test_cli_recipe_mode(vsi_dir, tmp_path, capsys):
    from geovr.cli.main import main

    ckpt = qwen_testing.cached_tiny_checkpoint("qwen2_5_vl")
    recipe = tmp_path / "eval.toml"
    recipe.write_text(f'''
name = "tiny_eval"
output_dir = "{tmp_path / "run"}"

[backbone]
component = "qwen2_5_vl"
pretrained = "{ckpt}"

[[evaluators]]
component = "vsibench"
data_dir = "{vsi_dir}"
num_frames = 2
max_new_tokens = 2
limit = 2
progress = false
''')
    assert main(["eval", str(recipe), "evaluators.0.protocol=geovr", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "run" / "eval" / "vsibench-geovr" / "results.json").read_text())
    assert saved["protocol"] == "geovr" and saved["num_questions"] == 2
    assert printed["vsibench"]["overall"] == pytest.approx(saved["scores"]["overall"])
    assert main(["eval", str(recipe), "--only", "synthetic_qa"]) == 2
    assert main(["eval", str(recipe), "evaluators.0.protocol=vsi"]) == 2
    err = capsys.readouterr().err
    assert "no evaluators to run" in err and "evaluators.0.protocol" in err
