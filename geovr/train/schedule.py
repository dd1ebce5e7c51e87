"""Learning-rate schedule: linear warm-up, then a half cosine from the base rate down to 0.

Same factors as ``transformers.get_cosine_schedule_with_warmup`` (a test compares them step by step),
without importing ``transformers.optimization``, which pulls in the trainer stack and costs several
seconds of start-up in every training process.
"""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR


class CosineWithWarmup:
    """Factor of the base LR at optimizer step ``t``: ``t / warmup`` during warm-up, then
    ``0.5·(1 + cos(π·p))`` with ``p = (t − warmup) / (total − warmup)`` (clamped at 0)."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = int(warmup), int(total)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        p = (step - self.warmup) / max(1, self.total - self.warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * p)))


def cosine_with_warmup(optimizer, warmup: int, total: int) -> LambdaLR:
    """A ``LambdaLR`` over every parameter group of ``optimizer`` (each keeps its own base LR)."""
    return LambdaLR(optimizer, CosineWithWarmup(warmup, total))
