"""Checkpoints: exact resume after a kill, atomic writes, keep-last-K, RNG round trip, mismatch errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from geovr.errors import CheckpointError
from geovr.testing import tiny
from geovr.train import checkpoint as ckpt_io
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.runlog import read_metrics
from geovr.train.trainer import build

CFG = {
    "batch_size": 2,
    "lr": 1e-2,
    "head_lr": 1e-2,
    "warmup_ratio": 0.25,
    "progress": False,
    "save_every": 2,
    "max_steps": 7,
}


class Kill:
    """Stops the process 'hard' after step ``at`` (after that step was logged, before the next save)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, state):
        if state.step == self.at:
            raise KeyboardInterrupt


def run(out, **kw):
    ctx = tiny.tiny_context(output_dir=str(out), n=6)  # 3 batches per epoch: resumes cross epoch boundaries
    cb = kw.pop("callbacks", [])
    ctx.callbacks = cb
    result = build(AccelerateTrainerConfig(**{**CFG, **kw}), ctx).fit(ctx)
    return ctx, result


def losses(run_dir):
    return [
        (r["step"], r["loss"], r["lm_loss"], r["feature_distill/loss"], r["depth/loss"], r["camera_pose/loss"])
        for r in read_metrics(run_dir)
    ]


def test_resume_after_kill_reproduces_uninterrupted_losses_exactly(tmp_path):
    ref_ctx, _ = run(tmp_path / "ref")
    ref = losses(tmp_path / "ref")
    assert [s for s, *_ in ref] == list(range(1, 8))

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", callbacks=[Kill(5)])  # checkpoint at step 4, step 5 logged, then killed
    assert [p.name for p in ckpt_io.list_checkpoints(tmp_path / "cut")][-1] == "step-00000004"
    assert len(read_metrics(tmp_path / "cut")) == 5
    ctx, result = run(tmp_path / "cut", resume=True)
    got = losses(tmp_path / "cut")
    assert got == ref  # bit-identical floats, every objective, every step (step 5 recomputed)
    assert result["steps"] == 7
    for (name, a), b in zip(ref_ctx.backbone.named_parameters(), ctx.backbone.parameters(), strict=False):
        assert torch.equal(a, b), name
    for oa, ob in zip(ref_ctx.objectives, ctx.objectives, strict=False):
        for a, b in zip(oa.parameters(), ob.parameters(), strict=False):
            assert torch.equal(a, b)


def test_resume_from_explicit_checkpoint_dir_into_new_run_dir(tmp_path):
    run(tmp_path / "ref")
    ref = losses(tmp_path / "ref")
    ckpt = tmp_path / "ref" / "checkpoints" / "step-00000006"
    run(tmp_path / "other", resume=str(ckpt))
    assert losses(tmp_path / "other") == [ref[-1]]


def test_interrupted_checkpoint_write_never_replaces_last_good(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *a, **k):
        if str(f).endswith("optimizer.pt"):
            calls["n"] += 1
            if calls["n"] == 2:  # second checkpoint (step 4): die half-way through the write
                raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt_io.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        run(tmp_path / "r")
    monkeypatch.setattr(ckpt_io.torch, "save", real_save)
    root = tmp_path / "r" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002"]  # temp dir cleaned, no step 4
    loaded = ckpt_io.load_checkpoint(tmp_path / "r")
    assert loaded["state"]["step"] == 2 and loaded["model"]

    # a write killed without cleanup (SIGKILL) leaves only a hidden temp dir: ignored, then swept
    ghost = root / ".tmp-step-00000004-deadbeef"
    ghost.mkdir()
    (ghost / "state.json").write_text(json.dumps({"step": 4}))
    assert ckpt_io.find_checkpoint(tmp_path / "r").name == "step-00000002"
    _, result = run(tmp_path / "r", resume=True)
    assert result["steps"] == 7 and not ghost.exists()


def test_keep_last_and_resave_same_step(tmp_path):
    kw = {
        "model": {"w": torch.ones(2)},
        "objectives": {"0.h": torch.zeros(1)},
        "optimizer": {},
        "scheduler": {},
        "rng": [ckpt_io.rng_state()],
        "state": {"epoch": 0, "batch": 0},
    }
    for step in (1, 2, 3, 4):
        ckpt_io.save_checkpoint(tmp_path, step, keep_last=2, **kw)
    assert [p.name for p in ckpt_io.list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    kw["model"] = {"w": torch.full((2,), 5.0)}
    ckpt_io.save_checkpoint(tmp_path, 4, keep_last=2, **kw)
    assert torch.equal(ckpt_io.load_checkpoint(tmp_path)["model"]["w"], torch.full((2,), 5.0))
    assert not list((tmp_path / "checkpoints").glob(".*"))


def test_rng_state_round_trip():
    state = ckpt_io.rng_state()
    a = (random.random(), float(np.random.rand()), torch.rand(3))
    ckpt_io.set_rng_state(state)
    b = (random.random(), float(np.random.rand()), torch.rand(3))
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])


def test_resume_errors_name_the_problem(tmp_path):
    run(tmp_path / "r", max_steps=2)
    with pytest.raises(CheckpointError, match="trainer.batch_size: 2 in the checkpoint, 3 now"):
        run(tmp_path / "r", resume=True, batch_size=3, max_steps=2)
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "r"), n=6, seed=1)  # other frozen "vision tower"
    with pytest.raises(CheckpointError, match="frozen weights of the backbone differ"):
        build(AccelerateTrainerConfig(**{**CFG, "resume": True}), ctx).fit(ctx)
    bad = tmp_path / "r" / "checkpoints" / "step-00000002" / "model.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        ckpt_io.load_checkpoint(tmp_path / "r")
    module = tiny.TinyBackbone()
    with pytest.raises(CheckpointError, match="missing"):
        ckpt_io.load_trainable(module, {"lm_head.weight": torch.zeros(1)}, where="x")


def test_resume_with_changed_schedule_or_data_order_is_refused_with_every_difference(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "r", callbacks=[Kill(3)])  # checkpoint at step 2
    with pytest.raises(CheckpointError) as err:
        run(tmp_path / "r", resume=True, max_steps=9, lr=5e-3, grad_accum=2)
    msg = str(err.value)
    for line in (
        "trainer.max_steps: 7 in the checkpoint, 9 now",
        "trainer.lr: 0.01 in the checkpoint, 0.005 now",
        "trainer.grad_accum: 1 in the checkpoint, 2 now",
        "--resume-force",
    ):
        assert line in msg
    assert "batch_size" not in msg and "head_lr" not in msg  # unchanged settings are not listed
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "r"), n=6)
    ctx.seed = 5  # same frozen weights, other data order
    with pytest.raises(CheckpointError, match="seed: 0 in the checkpoint, 5 now"):
        build(AccelerateTrainerConfig(**{**CFG, "resume": True}), ctx).fit(ctx)


def test_resume_force_prints_the_differences_and_continues(tmp_path):
    run(tmp_path / "r", max_steps=2)
    with pytest.warns(
        UserWarning, match=r"(?s)despite changed settings.*trainer.max_steps: 2 in the checkpoint, 4 now"
    ):
        _, result = run(tmp_path / "r", resume=True, resume_force=True, max_steps=4)
    assert result["steps"] == 4
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3, 4]
