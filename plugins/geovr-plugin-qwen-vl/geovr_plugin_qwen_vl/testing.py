"""Test helpers on the tiny random-init models of :mod:`geovr_plugin_qwen_vl.tiny_models` (offline, CPU).

Other plugins, the core's tests and the benchmarks use these to exercise the real code path:

* :func:`cached_tiny_checkpoint` — :func:`~geovr_plugin_qwen_vl.tiny_models.save_tiny_checkpoint`, written
  once per process into a temporary directory;
* :func:`tiny_backbone` — a built backbone on that checkpoint (recipe options as keyword arguments);
* :func:`tiny_batch` — a :class:`geovr.protocols.Batch` of random frames with question/answer text.

Typical pytest use (session-scoped, so the checkpoint is written once)::

    @pytest.fixture(scope="session")
    def qwen3_dir(tmp_path_factory):
        return save_tiny_checkpoint("qwen3_vl", tmp_path_factory.mktemp("qwen3"))

or simply ``tiny_backbone("qwen3_vl", lora={"rank": 4})`` (checkpoint cached per process).
"""

from __future__ import annotations

import os
from typing import Literal

from geovr_plugin_qwen_vl.tiny_models import save_tiny_checkpoint


def tiny_batch(batch_size: int = 1, num_frames: int = 2, size: int = 56, *, seed: int = 0, with_options=True):
    """A :class:`geovr.protocols.Batch`: random frames ``[B,S,3,size,size]`` in [0,1]; even samples
    are multiple-choice (when ``with_options``), odd ones numerical."""
    import torch

    from geovr.protocols import Batch

    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(batch_size, num_frames, 3, size, size, generator=g)
    questions, answers, options = [], [], []
    for i in range(batch_size):
        if with_options and i % 2 == 0:
            questions.append("Which object is closest to the camera?")
            options.append(["A. chair", "B. table", "C. lamp"])
            answers.append("B")
        else:
            questions.append(f"How many chairs are in the room? ({i})")
            options.append(None)
            answers.append(str(2 + i))
    return Batch(
        frames=frames,
        sample_ids=[f"s{i}" for i in range(batch_size)],
        questions=questions,
        answers=answers,
        options=options,
        question_types=["qa"] * batch_size,
        scene_ids=[f"scene{i}" for i in range(batch_size)],
        frame_indices=torch.arange(num_frames).expand(batch_size, num_frames).clone(),
    )


_CACHE: dict[tuple[str, int], str] = {}


def cached_tiny_checkpoint(kind: Literal["qwen2_5_vl", "qwen3_vl"], *, seed: int = 0) -> str:
    """Like :func:`save_tiny_checkpoint` but written once per process into a temporary directory
    (removed at exit) and reused: cheap to call from many tests or fixtures."""
    import atexit
    import shutil
    import tempfile

    key = (kind, seed)
    if key not in _CACHE or not os.path.isdir(_CACHE[key]):
        root = tempfile.mkdtemp(prefix=f"geovr-tiny-{kind}-")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _CACHE[key] = save_tiny_checkpoint(kind, os.path.join(root, "ckpt"), seed=seed)
    return _CACHE[key]


def tiny_backbone(kind: Literal["qwen2_5_vl", "qwen3_vl"], **options):
    """Build the ``kind`` backbone from :func:`cached_tiny_checkpoint` (float32, CPU); ``options``
    are recipe options of :class:`geovr_plugin_qwen_vl.config.QwenVLBackboneConfig`."""
    from geovr_plugin_qwen_vl.backbone import build
    from geovr_plugin_qwen_vl.config import Qwen3VLBackboneConfig, Qwen25VLBackboneConfig

    cls = Qwen3VLBackboneConfig if kind == "qwen3_vl" else Qwen25VLBackboneConfig
    options.setdefault("pretrained", cached_tiny_checkpoint(kind))
    return build(kind, cls(**options))
