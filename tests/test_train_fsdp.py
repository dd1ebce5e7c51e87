"""FSDP2 (``trainer.sharding = "fsdp"``, torch ``fully_shard``) on 2 gloo CPU processes: parameters are sharded,
the losses equal a DDP run's, and a run killed after its step-2 checkpoint and resumed logs the same losses
and ends with the same weights as an uninterrupted run. ``token_dropout = 0.5`` leaves the geometry tokens
out of steps 1 and 3 (seed 0), so the sharded step without them runs, and the resumed run repeats the draw."""

from __future__ import annotations

import textwrap

import pytest
import torch
from safetensors.torch import load_file

from geovr.testing.multiprocess import launch
from geovr.train.checkpoint import find_checkpoint
from geovr.train.runlog import read_metrics

SCRIPT = textwrap.dedent("""
    import sys
    import torch
    torch.set_num_threads(1)
    from accelerate.state import PartialState
    from geovr.testing import tiny
    from geovr.train.configs import AccelerateTrainerConfig
    from geovr.train.trainer import build

    out, mode = sys.argv[1], sys.argv[2]

    class Kill:
        def on_step_end(self, state):
            if mode == "crash" and state.step == 3:   # after the step-2 checkpoint, before the next one
                raise KeyboardInterrupt

    ctx = tiny.tiny_context(output_dir=out, n=8)
    for m in ctx.backbone.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    ctx.callbacks = [Kill()]
    cfg = AccelerateTrainerConfig(batch_size=2, lr=1e-2, head_lr=1e-2, max_steps=4, warmup_ratio=0.25,
                                  progress=False, save_every=2, keep_last=0, token_dropout=0.5,
                                  sharding="ddp" if mode == "ddp" else "fsdp",
                                  resume=(mode == "resume"), overwrite=(mode != "resume"))
    try:
        result = build(cfg, ctx).fit(ctx)
        from torch.distributed.tensor import DTensor
        p = ctx.backbone.embed.weight
        local = p.to_local().numel() if isinstance(p, DTensor) else p.numel()
        print("rank", PartialState().process_index, "steps", result["steps"], "sharded", isinstance(p, DTensor),
              "local", local, "of", p.numel())
    except KeyboardInterrupt:
        print("killed at step 3")
    PartialState().destroy_process_group()
""")


def test_fsdp_save_kill_resume_equals_uninterrupted(tmp_path):
    full, broken = tmp_path / "full", tmp_path / "broken"
    outs = launch(SCRIPT, tmp_path, full, "full", name="fsdp.py", timeout=300)
    assert "rank 0 steps 4 sharded True" in outs[0][0]
    local, total = (int(x) for x in outs[0][0].split("local ")[1].split(" of "))
    assert local < total  # each process holds a shard of the parameter
    launch(SCRIPT, tmp_path, tmp_path / "ddp", "ddp", name="fsdp.py", timeout=300)
    outs = launch(SCRIPT, tmp_path, broken, "crash", name="fsdp.py", timeout=300)
    assert all("killed at step 3" in o for o, _ in outs)
    assert find_checkpoint(str(broken)).name == "step-00000002"
    launch(SCRIPT, tmp_path, broken, "resume", name="fsdp.py", timeout=300)

    ref = {r["step"]: r["loss"] for r in read_metrics(full)}
    got = {r["step"]: r["loss"] for r in read_metrics(broken)}
    assert sorted(ref) == [1, 2, 3, 4] and sorted(got) == [1, 2, 3, 4]
    with_tokens = {r["step"]: "camera_pose/loss" in r for r in read_metrics(full)}
    assert with_tokens == {1: False, 2: True, 3: False, 4: True}
    assert {r["step"]: "camera_pose/loss" in r for r in read_metrics(broken)} == with_tokens
    assert [got[s] for s in range(1, 5)] == pytest.approx([ref[s] for s in range(1, 5)], rel=1e-6)
    assert ref[4] != ref[1]
    ddp = [r["loss"] for r in read_metrics(tmp_path / "ddp")]
    assert [ref[s] for s in range(1, 5)] == pytest.approx(ddp, rel=1e-5)  # FSDP trains as DDP does
    a, b = find_checkpoint(str(full)), find_checkpoint(str(broken))
    assert a.name == b.name == "step-00000004"
    for f in ("model.safetensors", "objectives.safetensors"):
        x, y = load_file(str(a / f)), load_file(str(b / f))
        assert x.keys() == y.keys() and len(x) > 0
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=1e-6, atol=1e-7, msg=f"{f}:{k}")
    opt = torch.load(a / "optimizer.pt", weights_only=True)
    assert opt["state"] and all(isinstance(k, str) for k in opt["state"])  # full state, keyed by name
