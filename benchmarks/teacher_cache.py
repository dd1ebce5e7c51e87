"""Training step time: online teacher vs teacher-output cache vs targets precomputed in memory.

Same tiny random-init Qwen-VL student, same objectives (camera_pose, feature_distill, depth with small
heads), same data (:class:`geovr.testing.tiny.TinyVideos`). The teacher is the ``vggt`` component with the
tiny weights of the plugin's tests (``model_config = "tiny"``) at ``--image-size``. First the cache is filled with
:func:`geovr.train.teacher_cache.precompute` (the ``geovr cache`` verb) and every sample's teacher outputs are also
kept in memory; then rounds rotate between three modes on the same model instance:

* ``online``: ``trainer.cache = "off"``, the teacher runs every step;
* ``cached``: ``trainer.cache = "only"``, outputs read from safetensors, the teacher never runs;
* ``memory``: the physical limit of a cached run — the teacher is replaced by a lookup of the in-memory
  outputs (no disk, no network), ``trainer.cache = "off"``.

Medians of the per-step wall time (from an ``on_step_end`` callback) and the ratios are printed. Targets:
cached >= 2x faster than online; cached within 10 % of memory. On a shared machine absolute times move
with the load; the modes are interleaved round by round so their ratios stay comparable.

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

    from geovr.plugins import get_registry
    from geovr.protocols import BuildContext
    from geovr.testing import tiny
    from geovr_plugin_qwen_vl.testing import tiny_backbone

    root = Path(__file__).resolve().parents[1] / "plugins" / "geovr-plugin-vggt" / "tests" / "golden"
    if not (root / "tiny_weights.safetensors").is_file():
        raise SystemExit(f"tiny VGGT weights not found in {root} (run from a geovr checkout)")
    torch.manual_seed(0)
    reg = get_registry()
    ctx = BuildContext(
        output_dir=out_dir,
        backbone=tiny_backbone(args.kind, freeze=["vision"]),
        datasets={"train": tiny.TinyVideos(n=args.samples, frames=args.frames, size=args.size)},
    )
    ctx.teacher = reg.get("teacher", "vggt").build(
        {
            "pretrained": str(root / "tiny_weights.safetensors"),
            "model_config": "tiny",
            "image_size": args.image_size,
            "layers": [2, 5],
            "pool": 2,
        },
        ctx,
    )
    tables = {
        "camera_pose": {"hidden_dim": 32},
        "feature_distill": {"teacher_layers": [5], "student_layers": [1], "hidden_dim": 16},
        "depth": {
            "teacher_layers": [2, 2, 5, 5],
            "student_layers": [1, 1, 2, 2],
            "channels": [16, 16, 16, 16],
            "features": 16,
            "grad_scales": 2,
        },
    }
    for name in args.objectives.split(","):
        ctx.objectives.append(reg.get("objective", name).build(tables[name], ctx))
    return ctx


class MemoryTeacher:
    """Teacher stand-in serving precomputed outputs from memory by sample id (the 'targets cost nothing' limit)."""

    def __init__(self, teacher, store: dict):
        self.teacher, self.store = teacher, store
        self.provides, self.layers = teacher.provides, teacher.layers
        self.num_layers, self.feature_dim = teacher.num_layers, teacher.feature_dim

    def encode(self, frames, layers=None, *, batch=None):
        from geovr.protocols import TeacherOutput

        rows = [self.store[sid] for sid in batch.sample_ids]
        return TeacherOutput.from_tensors({k: torch_stack([r[k] for r in rows]) for k in rows[0]})

    def cache_key(self) -> str:
        return "memory:" + self.teacher.cache_key()


def torch_stack(tensors):
    import torch

    return torch.stack(tensors)


def fill_memory(ctx, layers) -> dict:
    """Every sample's teacher outputs ``{sample_id: {name: tensor}}`` (no batch dimension)."""
    import torch

    from geovr.data.collate import collate

    store = {}
    ds = ctx.datasets["train"]
    for i in range(len(ds)):
        b = collate([ds[i]])
        with torch.no_grad():
            out = ctx.teacher.encode(b.frames, layers, batch=b).tensors()
        store[b.sample_ids[0]] = {k: v[0].float() for k, v in out.items()}
    return store


def run(ctx, mode: str, args, cache_dir: str) -> list[float]:
    """Per-step durations of one trainer run with ``cache = mode``."""
    return trainer_step_times(
        ctx, max_steps=args.steps, batch_size=args.batch, cache=mode, cache_dir=cache_dir, shuffle=True
    )


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
    ap.add_argument(
        "--objectives",
        default="camera_pose,feature_distill,depth",
        help="comma-separated subset of camera_pose, feature_distill, depth (the depth head runs at "
        "the teacher's depth resolution and dominates the student step)",
    )
    args = ap.parse_args(argv)

    import torch

    from geovr.train.configs import AccelerateTrainerConfig
    from geovr.train.teacher_cache import precompute

    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="geovr-bench-cache-")
    ctx = make_context(args, f"{tmp}/run")
    t0 = time.perf_counter()
    stats = precompute(
        ctx, progress=False, config=AccelerateTrainerConfig(batch_size=args.batch, cache_dir=f"{tmp}/cache")
    )
    fill = time.perf_counter() - t0
    from geovr.train.teacher_cache import teacher_layers

    real = ctx.teacher
    store = fill_memory(ctx, teacher_layers(real, ctx.objectives))
    memory_teacher = MemoryTeacher(real, store)
    times = {"online": [], "cached": [], "memory": []}
    modes = [("online", "off"), ("cached", "only"), ("memory", "off")]
    for r in range(args.rounds):
        for name, cache in modes[r % 3 :] + modes[: r % 3]:  # rotate the order round by round
            ctx.teacher = memory_teacher if name == "memory" else real
            times[name] += run(ctx, cache, args, f"{tmp}/cache")[2:]
    ctx.teacher = real
    on, ca, me = (statistics.median(times[k]) for k in ("online", "cached", "memory"))
    print(
        f"student tiny {args.kind}, teacher tiny VGGT @ {args.image_size}px, batch {args.batch} x {args.frames} "
        f"frames, objectives {args.objectives}, {len(times['online'])} timed steps each, torch threads {args.threads}"
    )
    print(f"cache fill (geovr cache): {stats['written']} entries in {fill:.2f} s")
    print(f"online teacher : {1e3 * on:8.2f} ms/step (median)")
    print(f"cached teacher : {1e3 * ca:8.2f} ms/step (median)")
    print(f"in-memory      : {1e3 * me:8.2f} ms/step (median; targets cost nothing)")
    print(f"online/cached  : {on / ca:8.2f} x  (target >= 2x)")
    print(f"cached/memory  : {ca / me:8.3f}    (target <= 1.10)")


if __name__ == "__main__":
    main()
