"""Benchmark ``geovr data synth`` end to end against its parts, side by side in one run.

Usage::

    python benchmarks/synth.py                        # 224x224, 16 frames/scene, 6 scenes, 2 threads
    python benchmarks/synth.py --scenes 12 --frames 32 --threads 2
    python benchmarks/synth.py --compiled           # also the torch.compile renderer (compiles once first)

Prints frames/s of (1) the renderer alone (eager), (2) the per-scene extra work measured alone
(questions, x264 ``medium`` and ``veryfast`` encoding, geometry save), (3) the previous sequential
pipeline (render → questions → ``medium`` encode → save, one after the other) and (4) today's
:func:`geovr.data.synthetic.cli.synthesize` (``veryfast`` encode and questions on a writer thread
overlapping the next render), and the ratios end-to-end / renderer. On a shared machine compare the
ratios; absolute numbers scale with the free CPU.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from geovr.data.synthetic.camera import make_trajectory
from geovr.data.synthetic.cli import synthesize
from geovr.data.synthetic.dataset import scene_seed
from geovr.data.synthetic.qa import generate_questions
from geovr.data.synthetic.render import render
from geovr.data.synthetic.scene import generate_scene
from geovr.data.video import write_video


def _scenes(n, frames, size, seed):
    out = []
    for i in range(n):
        s = scene_seed(seed, i)
        scene = generate_scene(s, name=f"scene_{i:05d}")
        out.append((s, scene, make_trajectory(scene, frames, size, s)))
    return out


def _sequential(tmp: Path, scenes, size, preset: str) -> float:
    """The previous pipeline: everything one after the other in one thread."""
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    for s, scene, traj in scenes:
        r = render(scene, traj.intrinsics, traj.extrinsics, size)
        generate_questions(scene, r["ids"], seed=s)
        write_video(tmp / f"{scene.name}.mp4", r["rgb"], fps=10, preset=preset)
        save_file({"depth": r["depth"].contiguous(), "ids": r["ids"].contiguous()}, str(tmp / f"{scene.name}.st"))
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", nargs=2, type=int, default=[224, 224], metavar=("H", "W"))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compiled", action="store_true", help="also measure the compiled renderer and synth --compile")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = tuple(args.size)
    scenes = _scenes(args.scenes, args.frames, size, args.seed)
    total = args.scenes * args.frames
    render(scenes[0][1], scenes[0][2].intrinsics, scenes[0][2].extrinsics, size)  # warm-up

    t0 = time.perf_counter()
    rendered = [render(sc, tr.intrinsics, tr.extrinsics, size) for _, sc, tr in scenes]
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    for (s, sc, _), r in zip(scenes, rendered):
        generate_questions(sc, r["ids"], seed=s)
    t_questions = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="geovr-bench-synth-"))
    try:
        enc = {}
        for preset in ("medium", "veryfast"):
            t0 = time.perf_counter()
            for (_, sc, _), r in zip(scenes, rendered):
                write_video(tmp / f"{sc.name}-{preset}.mp4", r["rgb"], fps=10, preset=preset)
            enc[preset] = time.perf_counter() - t0
        sizes = {p: sum(f.stat().st_size for f in tmp.glob(f"*-{p}.mp4")) / args.scenes / 1024
                 for p in ("medium", "veryfast")}
        t_before = _sequential(tmp, scenes, size, "medium")
        out = tmp / "synth"
        summary = synthesize(out, scenes=args.scenes, frames=args.frames, size=size, seed=args.seed,
                             progress=False)
        t_after = summary["seconds"]
        t_comp = None
        if args.compiled:
            sc0, tr0 = scenes[0][1], scenes[0][2]
            render(sc0, tr0.intrinsics, tr0.extrinsics, size, compiled=True)  # compile once (or load the cache)
            t0 = time.perf_counter()
            for _, sc, tr in scenes:
                render(sc, tr.intrinsics, tr.extrinsics, size, compiled=True)
            t_render_c = time.perf_counter() - t0
            t_comp = synthesize(tmp / "synth-c", scenes=args.scenes, frames=args.frames, size=size, seed=args.seed,
                                progress=False, compiled=True)["seconds"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    fps = {"renderer alone (eager)": total / t_render,
           "questions alone": total / t_questions,
           "x264 medium encode alone": total / enc["medium"],
           "x264 veryfast encode alone": total / enc["veryfast"],
           "synth before (sequential, medium)": total / t_before,
           "synth now (writer thread, veryfast)": total / t_after}
    if t_comp is not None:
        fps["renderer alone (compiled)"] = total / t_render_c
        fps["synth now --compile"] = total / t_comp
    print(f"geovr data synth at {size[0]}x{size[1]}, {args.frames} frames/scene, {args.scenes} scenes, "
          f"{args.threads} threads")
    for k, v in fps.items():
        print(f"  {k:<38} {v:8.1f} frames/s")
    print(f"  mp4 size per scene: medium {sizes['medium']:.0f} KiB, veryfast {sizes['veryfast']:.0f} KiB")
    r = fps["renderer alone (eager)"]
    print(f"  end-to-end / renderer: before {fps['synth before (sequential, medium)'] / r:.2f}, "
          f"now {fps['synth now (writer thread, veryfast)'] / r:.2f}; now / before "
          f"{t_before / t_after:.2f}x")
    if t_comp is not None:
        print(f"  compiled: end-to-end / renderer {fps['synth now --compile'] / fps['renderer alone (compiled)']:.2f}")


if __name__ == "__main__":
    main()
