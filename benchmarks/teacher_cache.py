"""Training step time with the teacher-output cache vs running the tiny VGGT teacher online.

Same tiny random-init Qwen-VL student, same objectives (camera_pose, feature_distill, depth with small
heads), same data (:class:`geovr.train.tiny.TinyVideos`). The teacher is the ``vggt`` component with the
reference tiny weights of the plugin's tests (``model_config = "tiny"``) at ``--image-size``. First the cache is filled with
:func:`geovr.train.cache.precompute` (the ``geovr cache`` verb); then rounds alternate between
``trainer.cache = "off"`` (teacher runs every step) and ``"only"`` (outputs read from safetensors, the
teacher never runs), both on the same model instance. Medians of the per-step wall time (from an
``on_step_end`` callback) and their ratio are printed. Target: cached >= 2x faster.

Usage::

    python benchmarks/teacher_cache.py [--steps 10] [--rounds 4] [--frames 4] [--size 56] [--image-size 224]
        [--objectives camera_pose,feature_distill,depth]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _timing import trainer_step_times


def make_context(args, out_dir):
    """Student, tiny VGGT teacher, objectives, data (seeded)."""
    import torch
    from geovr_plugin_qwen_vl.testing import tiny_backbone

    from geovr.plugins import get_registry
    from geovr.protocols import BuildContext
    from geovr.train import tiny

    root = Path(__file__).resolve().parents[1] / "plugins" / "geovr-plugin-vggt" / "tests" / "golden"
    if not (root / "tiny_weights.safetensors").is_file():
        raise SystemExit(f"tiny VGGT weights not found in {root} (run from a geovr checkout)")
    torch.manual_seed(0)
    reg = get_registry()
    ctx = BuildContext(output_dir=out_dir, backbone=tiny_backbone(args.kind, freeze=["vision"]),
                       datasets={"train": tiny.TinyVideos(n=args.samples, frames=args.frames, size=args.size)})
    ctx.teacher = reg.get("teacher", "vggt").build(
        {"pretrained": str(root / "tiny_weights.safetensors"), "model_config": "tiny",
         "image_size": args.image_size, "layers": [2, 5], "pool": 2}, ctx)
    tables = {
        "camera_pose": {"hidden_dim": 32},
        "feature_distill": {"teacher_layers": [5], "student_layers": [1], "hidden_dim": 16},
        "depth": {"teacher_layers": [2, 2, 5, 5], "student_layers": [1, 1, 2, 2], "channels": [16, 16, 16, 16],
                  "features": 16, "grad_scales": 2},
    }
    for name in args.objectives.split(","):
        ctx.objectives.append(reg.get("objective", name).build(tables[name], ctx))
    return ctx


def run(ctx, mode: str, args, cache_dir: str) -> list[float]:
    """Per-step durations of one trainer run with ``cache = mode``."""
    return trainer_step_times(ctx, max_steps=args.steps, batch_size=args.batch, cache=mode, cache_dir=cache_dir,
                              shuffle=True)


def main(argv=None) -> None:
    """Fill the cache, alternate online/cached rounds, print medians and the speed-up."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", default="qwen3_vl", choices=["qwen3_vl", "qwen2_5_vl"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--size", type=int, default=56, help="frame side in pixels (student input)")
    ap.add_argument("--image-size", type=int, default=224, help="VGGT working resolution (multiple of 14)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--objectives", default="camera_pose,feature_distill,depth",
                    help="comma-separated subset of camera_pose, feature_distill, depth (the depth head runs at "
                         "the teacher's depth resolution and dominates the student step)")
    args = ap.parse_args(argv)

    import torch

    from geovr.train.cache import precompute
    from geovr.train.configs import AccelerateTrainerConfig

    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="geovr-bench-cache-")
    ctx = make_context(args, f"{tmp}/run")
    t0 = time.perf_counter()
    stats = precompute(ctx, progress=False, config=AccelerateTrainerConfig(batch_size=args.batch,
                                                                          cache_dir=f"{tmp}/cache"))
    fill = time.perf_counter() - t0
    online, cached = [], []
    for r in range(args.rounds):
        order = (("off", online), ("only", cached))
        for mode, acc in (order if r % 2 == 0 else order[::-1]):
            acc += run(ctx, mode, args, f"{tmp}/cache")[2:]
    on, ca = statistics.median(online), statistics.median(cached)
    print(f"student tiny {args.kind}, teacher tiny VGGT @ {args.image_size}px, batch {args.batch} x {args.frames} "
          f"frames, objectives {args.objectives}, {len(online)} timed steps each")
    print(f"cache fill (geovr cache): {stats['written']} entries in {fill:.2f} s")
    print(f"online teacher : {1e3 * on:8.2f} ms/step (median)")
    print(f"cached teacher : {1e3 * ca:8.2f} ms/step (median)")
    print(f"speed-up       : {on / ca:8.2f} x  (target >= 2x)")


if __name__ == "__main__":
    main()
