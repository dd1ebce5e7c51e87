"""Per-step overhead of the geovr ``accelerate`` trainer over a hand-written training loop.

Both sides train the same tiny random-init Qwen-VL student (``geovr_plugin_qwen_vl.testing``) with the
same real objectives (camera_pose, feature_distill, depth; small head widths), the same tiny frozen
teacher (:class:`geovr.testing.tiny.TinyTeacher`), the same data (:class:`geovr.testing.tiny.TinyVideos`
through :func:`geovr.data.collate`), AdamW with the same parameter groups, cosine schedule and
gradient clipping. The hand-written loop is the minimum such a run needs; the trainer adds accelerate,
loss bookkeeping, metrics.jsonl, callbacks and the resumable data order.

A step's time is the wall time between consecutive step ends (data + teacher + forward + backward +
optimizer), so per-step costs on both sides are counted and set-up is not. Both loops train the *same*
model instance (each round starts a fresh optimizer), alternating in many short rounds, so a busy shared
machine and the model's state affect both alike. Medians and lower quartiles (less sensitive to load
spikes from other processes) are reported with their ratios.
Target: overhead <= 5 %.

Usage::

    python benchmarks/engine_overhead.py [--kind qwen3_vl] [--steps 8] [--rounds 10] [--frames 2] [--size 56]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from _timing import trainer_step_times


def make_context(args, out_dir):
    """Backbone, teacher, objectives and data (seeded)."""
    import torch

    from geovr.plugins import get_registry
    from geovr.protocols import BuildContext
    from geovr.testing import tiny
    from geovr_plugin_qwen_vl.testing import tiny_backbone

    torch.manual_seed(0)
    bb = tiny_backbone(args.kind, freeze=["vision"])
    ctx = BuildContext(
        output_dir=out_dir,
        backbone=bb,
        teacher=tiny.TinyTeacher(),
        datasets={"train": tiny.TinyVideos(n=64, frames=args.frames, size=args.size)},
    )
    reg = get_registry()
    ctx.objectives += [
        reg.get("objective", "camera_pose").build({"hidden_dim": 32}, ctx),
        reg.get("objective", "feature_distill").build(
            {"teacher_layers": [2], "student_layers": [1], "hidden_dim": 16}, ctx
        ),
        reg.get("objective", "depth").build(
            {"student_layers": [1, 1, 2, 2], "channels": [16, 16, 16, 16], "features": 16, "grad_scales": 2}, ctx
        ),
    ]
    return ctx


def hand_loop(ctx, steps: int, batch_size: int) -> list[float]:
    """The plain PyTorch loop; returns per-step durations."""
    import torch
    from torch.utils.data import DataLoader

    from geovr.data.collate import collate
    from geovr.protocols import GeometryRequest
    from geovr.train.schedule import cosine_with_warmup
    from geovr.train.trainer import parameter_groups

    bb, objs, teacher = ctx.backbone, ctx.objectives, ctx.teacher
    bb.train()
    groups = parameter_groups(bb, objs, lr=2e-5, head_lr=1e-4, weight_decay=0.0)
    opt = torch.optim.AdamW(groups)
    sched = cosine_with_warmup(opt, 0, steps)
    req = GeometryRequest.union(o.student_needs for o in objs)
    params = [p for g in groups for p in g["params"]]
    loader = DataLoader(
        ctx.datasets["train"],
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
    times, last = [], time.perf_counter()
    for i, batch in enumerate(loader):
        if i == steps:
            break
        with torch.no_grad():
            t_out = teacher.encode(batch.frames, None, batch=batch)
        out = bb(bb.prepare(batch), geometry=req)
        loss = out.lm_loss
        for o in objs:
            loss = loss + o.weight * o(out, t_out, batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())  # what any loop does to print the loss
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def geovr_loop(ctx, steps: int, batch_size: int) -> list[float]:
    """The geovr trainer on the same parts; per-step durations from an ``on_step_end`` callback."""
    return trainer_step_times(ctx, max_steps=steps, batch_size=batch_size, warmup_ratio=0.0)


def main(argv=None) -> None:
    """Alternate rounds of both loops; print medians (first 2 steps of each round dropped) and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", default="qwen3_vl", choices=["qwen3_vl", "qwen2_5_vl"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="geovr-bench-")
    ctx = make_context(args, f"{tmp}/run")
    hand, geo = [], []
    for r in range(args.rounds):
        order = ((hand_loop, hand), (geovr_loop, geo))
        for fn, acc in order if r % 2 == 0 else order[::-1]:
            acc += fn(ctx, args.steps, args.batch)[2:]
    h, g = statistics.median(hand), statistics.median(geo)
    hq, gq = statistics.quantiles(hand, n=4)[0], statistics.quantiles(geo, n=4)[0]
    print(f"tiny {args.kind}, batch {args.batch} x {args.frames} frames {args.size}px, {len(hand)} timed steps each")
    print(f"hand-written loop : {1e3 * h:8.2f} ms/step median, {1e3 * hq:8.2f} lower quartile")
    print(f"geovr trainer     : {1e3 * g:8.2f} ms/step median, {1e3 * gq:8.2f} lower quartile")
    print(
        f"overhead          : {100 * (g / h - 1):+7.2f} % median, {100 * (gq / hq - 1):+7.2f} % lower quartile "
        f"(target <= 5 %)"
    )


if __name__ == "__main__":
    main()
