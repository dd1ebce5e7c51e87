"""Frame times reach the backbone on the evaluation path too (container fps × frame indices)."""

from __future__ import annotations

import numpy as np
import torch

from geovr.data.video import write_video
from geovr.eval.qa import _make_batch


def test_eval_batch_carries_container_seconds(tmp_path):
    from geovr.eval.evaluators import VSIBenchEvaluator

    path = tmp_path / "v.mp4"
    write_video(path, np.zeros((90, 16, 16, 3), dtype=np.uint8), fps=30)
    ev = VSIBenchEvaluator.__new__(VSIBenchEvaluator)
    ev._cache = {}
    ev.config = type("C", (), {"num_frames": 4})()
    frames, idx, times = ev._read(str(path))
    assert idx.tolist() == [0, 29, 59, 89]  # lmms-eval truncation
    torch.testing.assert_close(times, idx.double() / 30)
    doc = {"id": "q1", "question_type": "x", "scene_name": "s"}
    batch = _make_batch([doc], [(frames, idx, times)], {"q1": "prompt"})
    torch.testing.assert_close(batch.frame_times[0], (idx / 30).float())
    assert _make_batch([doc], [(frames, idx)], {"q1": "prompt"}).frame_times is None
