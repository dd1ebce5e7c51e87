"""Benchmark ``geovr data synth`` end to end: the previous pipeline and today's, side by side in one run.

Usage::

    python benchmarks/synth.py                                   # 224x224, 250 scenes x 16 frames, eager + compiled
    python benchmarks/synth.py --modes eager --formats vsi wds --rounds 3
    python benchmarks/synth.py --scenes 8 --frames 8 --size 64 96 --modes eager   # quick look
    python benchmarks/synth.py --parts                           # also the parts alone (render, encode, ...)

Each measurement runs in a fresh process (so compilation is paid, or loaded from the on-disk cache, as a
user pays it) and times the whole job from inside, imports excluded: rendering, questions, encoding,
writing every file and, for ``conversations`` / ``wds``, those layouts. The two pipelines alternate
(previous, today, today, previous, ...) and the median of ``--rounds`` is reported with the ratio
today / previous, so a shared machine slows both alike; the load average is printed before and after.
The last columns turn the CPU time of the job (the process and its workers) into the frames/s all
cores would give if nothing else ran: an estimate of a quiet machine from a busy one.

* **previous**: the pipeline this replaced, reproduced here: one process rendering with torch's default
  threads while one writer thread makes questions and encodes with x264 ``veryfast`` (x264's own
  threads), then the conversation layouts with the first frames decoded through float tensors;
* **today**: :func:`geovr.data.synthetic.cli.synthesize` with its defaults (``--workers`` = all cores,
  one thread each, x264 ``ultrafast`` with one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _previous(out: Path, scenes: int, frames: int, size, seed: int, compiled: bool, fmt: str) -> float:
    """The pipeline before ``--workers`` (render here, questions + ``veryfast`` encode + save on a writer
    thread, then the layouts); returns its seconds."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from geovr.data.synthetic.camera import make_trajectory
    from geovr.data.synthetic.dataset import scene_seed
    from geovr.data.synthetic.qa import generate_questions
    from geovr.data.synthetic.render import render
    from geovr.data.synthetic.scene import generate_scene
    from geovr.data.video import read_video, write_video
    from geovr.data.writers import conversation_records, write_shards

    def write(paths, scene, s, rgb, geometry, meta):
        records = generate_questions(scene, geometry["ids"], seed=s)
        write_video(paths["videos"], rgb, fps=10, preset="veryfast")
        save_file(geometry, str(paths["geometry"]))
        paths["scenes"].write_text(json.dumps(meta, indent=1))
        return records

    H, W = size
    for sub in ("videos", "geometry", "scenes"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pending, results = collections.deque(), []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for i in range(scenes):
            s = scene_seed(seed, i)
            name = f"scene_{i:05d}"
            paths = {
                k: out / k / f"{name}{ext}"
                for k, ext in (("videos", ".mp4"), ("geometry", ".safetensors"), ("scenes", ".json"))
            }
            scene = generate_scene(s, name=name)
            traj = make_trajectory(scene, frames, (H, W), s)
            r = render(scene, traj.intrinsics, traj.extrinsics, (H, W), compiled=compiled)
            meta = {
                **scene.to_dict(),
                "camera": {"kind": traj.kind, "fov_w": traj.fov_w, "image_size": [H, W], "num_frames": frames},
            }
            geometry = {
                "depth": r["depth"].contiguous(),
                "ids": r["ids"].contiguous(),
                "intrinsics": torch.as_tensor(traj.intrinsics, dtype=torch.float32),
                "extrinsics": torch.as_tensor(traj.extrinsics, dtype=torch.float32),
            }
            pending.append(pool.submit(write, paths, scene, s, r["rgb"], geometry, meta))
            while len(pending) > 2:
                results.append(pending.popleft().result())
        while pending:
            results.append(pending.popleft().result())
    records = [rec for recs in results for rec in recs]
    with open(out / "qa.jsonl", "w", encoding="utf-8") as f:
        for n, rec in enumerate(records):
            f.write(json.dumps({**rec, "id": n}) + "\n")
    if fmt != "vsi":
        conv = conversation_records([{**rec, "id": n} for n, rec in enumerate(records)])
        (out / "images").mkdir(exist_ok=True)
        for name in sorted({Path(r["image"]).stem for r in conv if "image" in r}):
            frame, _ = read_video(out / "videos" / f"{name}.mp4", indices=[0])
            arr = (frame[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().numpy()
            Image.fromarray(arr).save(out / "images" / f"{name}.jpg", quality=95)
        (out / "conversations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in conv))
        if fmt == "wds":
            write_shards(out, shard_size=8)
    return time.perf_counter() - t0


def _renderer_alone(scenes: int, frames: int, size, seed: int, compiled: bool, threads: int) -> float:
    """Seconds to render the job's scenes (frames only: no questions, encoding or files) with ``threads``
    torch threads, after a warm-up (compilation) that is not timed."""
    import resource

    import torch

    from geovr.data.synthetic.camera import make_trajectory
    from geovr.data.synthetic.dataset import scene_seed
    from geovr.data.synthetic.render import render, warm_up
    from geovr.data.synthetic.scene import generate_scene

    torch.set_num_threads(threads)
    jobs = []
    for i in range(scenes):
        s = scene_seed(seed, i)
        sc = generate_scene(s)
        jobs.append((sc, make_trajectory(sc, frames, size, s)))
    if compiled:
        warm_up(size)
    render(jobs[0][0], jobs[0][1].intrinsics[:1], jobs[0][1].extrinsics[:1], size, compiled=compiled)
    _renderer_alone.cpu = sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime"))
    t0 = time.perf_counter()
    for sc, tr in jobs:
        render(sc, tr.intrinsics, tr.extrinsics, size, compiled=compiled)
    return time.perf_counter() - t0


def _child(args) -> None:
    """One measurement in this (fresh) process; prints ``{"seconds", "cpu_seconds"}`` as the last line
    (CPU time of this process and its workers during the job)."""
    import resource

    from geovr.data.synthetic.cli import _import_worker_modules

    _import_worker_modules()  # both pipelines: imports are not part of the job
    args.cpu_at_start = sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime"))
    out = Path(args.child_out)
    size = tuple(args.size)
    if args.pipeline.startswith("renderer"):  # reference: the renderer alone with 1 or 2 threads
        seconds = _renderer_alone(
            args.scenes, args.frames, size, args.seed, args.mode == "compiled", threads=int(args.pipeline[-1])
        )
        args.cpu_at_start = _renderer_alone.cpu
    elif args.pipeline == "previous":
        seconds = _previous(out, args.scenes, args.frames, size, args.seed, args.mode == "compiled", args.format)
    else:
        from geovr.data.synthetic.cli import synthesize

        seconds = synthesize(
            out,
            scenes=args.scenes,
            frames=args.frames,
            size=size,
            seed=args.seed,
            progress=False,
            compiled=args.mode == "compiled",
            fmt=args.format,
        )["seconds"]
    import resource

    cpu = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu - args.cpu_at_start}))


def _measure(args, pipeline: str, mode: str, fmt: str, tmp: Path) -> float:
    out = tmp / f"{pipeline}-{mode}-{fmt}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        __file__,
        "--child-out",
        str(out),
        "--pipeline",
        pipeline,
        "--mode",
        mode,
        "--format",
        fmt,
        "--scenes",
        str(args.scenes),
        "--frames",
        str(args.frames),
        "--size",
        *map(str, args.size),
        "--seed",
        str(args.seed),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"benchmark child failed ({' '.join(cmd)}):\n{res.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _parts(args) -> None:
    """Each stage alone in this process, one torch thread and two (frames/s of 224x224 video per core)."""
    import torch

    from geovr.data.synthetic.camera import make_trajectory
    from geovr.data.synthetic.dataset import scene_seed
    from geovr.data.synthetic.qa import generate_questions
    from geovr.data.synthetic.render import render
    from geovr.data.synthetic.scene import generate_scene
    from geovr.data.video import write_video

    size, n = tuple(args.size), min(args.scenes, 8)
    total = n * args.frames
    t0 = time.perf_counter()
    scenes = []
    for i in range(n):
        s = scene_seed(args.seed, i)
        sc = generate_scene(s)
        scenes.append((s, sc, make_trajectory(sc, args.frames, size, s)))
    rows = {"scene + camera path": time.perf_counter() - t0}
    render(scenes[0][1], scenes[0][2].intrinsics, scenes[0][2].extrinsics, size)
    rendered = None
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        rendered = [render(sc, tr.intrinsics, tr.extrinsics, size) for _, sc, tr in scenes]
        rows[f"render eager, {threads} thread(s)"] = time.perf_counter() - t0
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for (s, sc, _), r in zip(scenes, rendered, strict=True):
        generate_questions(sc, r["ids"], seed=s)
    rows["questions"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        for preset, threads in (("veryfast", 0), ("veryfast", 1), ("ultrafast", 1)):
            t0 = time.perf_counter()
            for k, r in enumerate(rendered):
                write_video(Path(tmp) / f"{k}.mp4", r["rgb"], fps=10, preset=preset, threads=threads)
            label = f"x264 {preset}, {'auto' if not threads else threads} thread(s)"
            rows[label] = time.perf_counter() - t0
            kib = sum(p.stat().st_size for p in Path(tmp).glob("*.mp4")) / n / 1024
            rows[label + f" [{kib:.0f} KiB/scene]"] = rows.pop(label)
    print(f"parts alone ({n} scenes x {args.frames} frames of {size[0]}x{size[1]}):")
    for k, v in rows.items():
        print(f"  {k:<44} {total / v:8.1f} frames/s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", nargs=2, type=int, default=[224, 224], metavar=("H", "W"))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument(
        "--scenes",
        type=int,
        default=250,
        help="scenes per job (default 250: 4000 frames, a job big enough that synth compiles by default)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", nargs="+", choices=("eager", "compiled"), default=["eager", "compiled"])
    ap.add_argument("--formats", nargs="+", choices=("vsi", "conversations", "wds"), default=["vsi"])
    ap.add_argument("--rounds", type=int, default=1, help="measurements of each pipeline (median reported)")
    ap.add_argument("--parts", action="store_true", help="also time each stage alone")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    # internal: one measurement in a child process
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--pipeline", choices=("previous", "today", "renderer1", "renderer2"), help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("eager", "compiled"), help=argparse.SUPPRESS)
    ap.add_argument("--format", default="vsi", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_out:
        return _child(args)
    if args.parts:
        _parts(args)
    total = args.scenes * args.frames
    load0 = os.getloadavg()
    print(
        f"geovr data synth end to end at {args.size[0]}x{args.size[1]}, {args.scenes} scenes x {args.frames} "
        f"frames, {os.cpu_count()} cores, load average {load0[0]:.2f} at start"
    )
    cores = os.cpu_count() or 1
    print(
        f"  {'mode':<9}{'format':<15}{'previous':>12}{'today':>12}{'today/previous':>16}"
        f"   CPU-time bound: previous / today"
    )
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="geovr-bench-synth-"))
    try:
        for mode in args.modes:
            for fmt in args.formats:
                runs = {"previous": [], "today": []}
                for r in range(args.rounds):
                    order = ("previous", "today") if r % 2 == 0 else ("today", "previous")
                    for pipeline in order:
                        runs[pipeline].append(_measure(args, pipeline, mode, fmt, tmp))
                if fmt == args.formats[0]:  # reference rows, once per mode
                    for ref in ("renderer1", "renderer2"):
                        runs[ref] = [_measure(args, ref, mode, "vsi", tmp)]
                fps = {k: total / statistics.median(m["seconds"] for m in v) for k, v in runs.items()}
                # CPU time per frame -> frames/s if every core were free for this job (an upper bound)
                idle = {k: cores * total / statistics.median(m["cpu_seconds"] for m in v) for k, v in runs.items()}
                ratio = fps["today"] / fps["previous"]
                results.append(
                    {
                        "mode": mode,
                        "format": fmt,
                        "previous_fps": fps["previous"],
                        "today_fps": fps["today"],
                        "ratio": ratio,
                        "previous_idle_cores_fps": idle["previous"],
                        "today_idle_cores_fps": idle["today"],
                        "runs": runs,
                        **{f"{k}_fps": fps[k] for k in ("renderer1", "renderer2") if k in fps},
                    }
                )
                print(
                    f"  {mode:<9}{fmt:<15}{fps['previous']:>8.1f} f/s{fps['today']:>8.1f} f/s{ratio:>15.2f}x"
                    f"{idle['previous']:>10.0f} f/s{idle['today']:>8.0f} f/s",
                    flush=True,
                )
                if "renderer1" in fps:
                    print(
                        f"  {'':<9}{'(renderer alone, 1 thread ' + format(fps['renderer1'], '.1f') + ' f/s, 2 threads '}"
                        f"{fps['renderer2']:.1f} f/s; today / (cores x renderer 1 thread) = "
                        f"{fps['today'] / (cores * fps['renderer1']):.2f})",
                        flush=True,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()
    print(
        f"  load average {load1[0]:.2f} at the end (1-min); frames/s = {total} frames / wall seconds of the job; "
        f"CPU-time bound = {cores} cores x {total} frames / CPU seconds of the job (what idle cores would give "
        f"with perfect overlap; inflated for 'previous', whose idle OpenMP threads spin)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "size": args.size,
                    "scenes": args.scenes,
                    "frames": args.frames,
                    "cores": os.cpu_count(),
                    "load_start": load0,
                    "load_end": load1,
                    "results": results,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
