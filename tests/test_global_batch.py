"""``trainer.global_batch_size``: the accumulation follows from the number of processes, so the optimizer
sees the same number of samples per step (the released recipe: 32) at any world size."""

from __future__ import annotations

import pytest
import torch

from geovr.errors import GeovrError
from geovr.testing import tiny
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.trainer import build


@pytest.mark.parametrize(("world", "accum"), [(1, 16), (2, 8), (4, 4)])
def test_accumulation_gives_global_batch_32(world, accum):
    cfg = AccelerateTrainerConfig(batch_size=2, global_batch_size=32)
    assert cfg.check() == []
    assert cfg.accumulation(world) == accum
    assert accum * cfg.batch_size * world == 32
    resolved = cfg.for_world(world)
    assert resolved.grad_accum == accum and resolved.global_batch_size == 0


def test_without_global_batch_grad_accum_is_used():
    assert AccelerateTrainerConfig(batch_size=2, grad_accum=4).accumulation(4) == 4


def test_indivisible_global_batch_is_a_clear_error():
    cfg = AccelerateTrainerConfig(batch_size=2, global_batch_size=32)
    with pytest.raises(
        GeovrError,
        match=r"global_batch_size = 32 is not a multiple of batch_size \(2\) × processes "
        r"\(3\) = 6",
    ):
        cfg.accumulation(3)
    problems = " ".join(AccelerateTrainerConfig(batch_size=3, global_batch_size=32, grad_accum=2).check())
    assert "multiple of batch_size (3)" in problems and "not both" in problems
    assert "global_batch_size must be >= 0" in " ".join(AccelerateTrainerConfig(global_batch_size=-1).check())


def test_trainer_accumulates_to_the_global_batch(tmp_path):
    """One process, batch 2, global batch 4 → 2 micro-batches per step: the same weights as batch 4."""

    def params_after(**kw):
        ctx = tiny.tiny_context(output_dir=str(tmp_path / str(sorted(kw.items()))), n=8)
        for m in ctx.backbone.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        cfg = AccelerateTrainerConfig(
            lr=1e-2, head_lr=1e-2, warmup_ratio=0.0, progress=False, max_steps=2, max_grad_norm=0.0, **kw
        )
        build(cfg, ctx).fit(ctx)
        return {k: v.detach().clone() for k, v in ctx.backbone.named_parameters()}

    a = params_after(batch_size=4)
    b = params_after(batch_size=2, global_batch_size=4)
    c = params_after(batch_size=2)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs")
    assert any(not torch.allclose(a[k], c[k], rtol=1e-4, atol=1e-5) for k in a)  # batch 2 alone differs
