"""Snapshot tests freezing the exact VSI-Bench prompts of both protocols.

The expected text lives in ``tests/snapshots/vsibench_prompts_<protocol>.txt``. After an intended
prompt change, regenerate with ``GEOVR_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_eval_prompts.py``
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geovr.eval.prompts import build_prompt, doc_prompt

SNAPSHOTS = Path(__file__).parent / "snapshots"
DOCS = [
    {
        "id": "0",
        "dataset": "arkitscenes",
        "scene_name": "41069025",
        "question_type": "object_counting",
        "question": "How many chair(s) are in this room?",
        "options": None,
        "ground_truth": "4",
    },
    {
        "id": "1",
        "dataset": "scannet",
        "scene_name": "scene0011_00",
        "question_type": "room_size_estimation",
        "question": "What is the size of this room (in square meters)? If multiple rooms are shown, estimate the "
        "size of the combined space.",
        "options": None,
        "ground_truth": "23.5",
    },
    {
        "id": "2",
        "dataset": "scannetpp",
        "scene_name": "0d2ee665be",
        "question_type": "object_rel_direction_hard",
        "question": "If I am standing by the sofa and facing the tv, is the lamp to my front-left, front-right, "
        "back-left, or back-right?",
        "options": ["A. front-left", "B. front-right", "C. back-left", "D. back-right"],
        "ground_truth": "C",
    },
    {
        "id": "3",
        "dataset": "scannet",
        "scene_name": "scene0015_00",
        "question_type": "obj_appearance_order",
        "question": "What will be the first-time appearance order of the following categories in the video: "
        "bed, lamp, door, sink?",
        "options": [
            "A. bed, lamp, door, sink",
            "B. lamp, bed, sink, door",
            "C. door, sink, bed, lamp",
            "D. sink, door, lamp, bed",
        ],
        "ground_truth": "A",
    },
]


def render(protocol: str) -> str:
    """All snapshot prompts of ``protocol`` as one text."""
    return "".join(f"=== {d['id']} {d['question_type']} ===\n{doc_prompt(d, protocol=protocol)}\n" for d in DOCS)


@pytest.mark.parametrize("protocol", ["lmms-eval", "geovr"])
def test_prompt_snapshot(protocol):
    path = SNAPSHOTS / f"vsibench_prompts_{protocol}.txt"
    text = render(protocol)
    if os.environ.get("GEOVR_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing; create it with GEOVR_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8")


def test_prompt_pieces():
    lmms = build_prompt("Q?", ["A. x", "B. y"], protocol="lmms-eval")
    assert lmms == (
        "These are frames of a video.\nQ?\nOptions:\nA. x\nB. y\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert build_prompt("Q?", None, protocol="lmms-eval") == (
        "These are frames of a video.\nQ?\nPlease answer the question using a single word or phrase."
    )
    assert build_prompt("Q?", ["A. x", "B. y"], protocol="geovr") == (
        "Q?\nA. x\nB. y\nAnswer with ONLY the option's letter directly."
    )
    assert build_prompt("Q?", None, protocol="geovr") == (
        "Q?\nPlease answer the question ONLY using a single Arabic numeral."
    )
    with pytest.raises(ValueError):
        build_prompt("Q?", None, protocol="other")
