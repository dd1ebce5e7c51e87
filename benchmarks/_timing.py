"""Timing helpers shared by the benchmarks (imported as ``from _timing import ...`` when a benchmark
runs as a script: its directory is then first on ``sys.path``)."""

from __future__ import annotations

import time


def trainer_step_times(ctx, **trainer_options) -> list[float]:
    """Run the ``accelerate`` trainer on a built context with ``trainer_options`` and return the
    duration of every optimizer step (measured by an ``on_step_end`` callback; seconds)."""
    from geovr.train.configs import AccelerateTrainerConfig
    from geovr.train.trainer import build

    stamps: list[float] = []

    class Clock:
        def on_step_end(self, state):
            stamps.append(time.perf_counter())

    ctx.callbacks = [Clock()]
    cfg = AccelerateTrainerConfig(progress=False, save_every=0, overwrite=True, **trainer_options)
    start = time.perf_counter()
    build(cfg, ctx).fit(ctx)
    return [b - a for a, b in zip([start] + stamps[:-1], stamps, strict=False)]
