"""``geovr data synth``: write a synthetic VSI-style dataset to disk.

Layout of ``--out DIR``::

    DIR/videos/<scene>.mp4            H.264 video of the rendered frames
    DIR/geometry/<scene>.safetensors  depth [S,H,W] (m), intrinsics [S,3,3], extrinsics [S,3,4], ids [S,H,W]
    DIR/scenes/<scene>.json           room, objects and camera path of the scene
    DIR/qa.jsonl                      VSI-format questions about all scenes
    DIR/.geovr-synth.json             marker with the options (makes re-runs idempotent)

The ``video_qa`` dataset reads this layout directly (``annotations = "DIR/qa.jsonl"``,
``video_root = "DIR/videos"``, ``geometry_root = "DIR/geometry"``).

Speed: scenes are independent, so ``--workers N`` processes (default: every core) each make whole
scenes (render, questions, x264 encode, save) with one thread; the output is the same, byte for byte,
whatever ``N``. With a single worker the scene is made in this process (one render thread), a writer
thread encoding and saving one scene while the next renders. The renderer runs through ``torch.compile`` when the job is big
enough to repay the compilation (:data:`AUTO_COMPILE_PIXELS`; ``--compile`` / ``--no-compile`` force
it), compiled once here before the workers fork; when compiling fails it warns and renders eagerly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NamedTuple

from geovr.data.configs import WALLS
from geovr.errors import UsageError

MARKER = ".geovr-synth.json"
#: x264 presets ``--preset`` accepts (fastest first).
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
#: Default x264 preset: at ``crf`` 16 it encodes ~2x faster than ``veryfast`` at a slightly higher PSNR
#: (41.6 against 41.0 dB at 224x224) in ~1.6x larger files (see docs/data.md).
DEFAULT_PRESET = "ultrafast"
#: With neither ``--compile`` nor ``--no-compile``, the renderer is compiled when the scenes still to
#: render hold at least this many pixels (frames x H x W; 2000 frames of 224x224): below it the one-off
#: compilation (seconds with a warm on-disk cache, ~30 s cold) costs more than it saves.
AUTO_COMPILE_PIXELS = 2000 * 224 * 224
EPILOG = """examples:
  geovr data synth --out data/synth --scenes 100 --frames 32 --size 224 224 --seed 0
  geovr data synth --out /tmp/tiny --scenes 2 --frames 8 --size 64 96
  geovr data synth --out data/big --scenes 1000 --frames 32 --workers 2 --compile
  geovr data synth --out data/small --scenes 50 --frames 16 --no-compile --preset veryfast
  geovr data synth --out data/compass --scenes 20 --frames 16 --walls compass
  (re-running the same command resumes/skips finished scenes; a non-empty directory that was not
  created by this command is never overwritten; the output does not depend on --workers)"""


def add_parser(subparsers) -> None:
    """Register ``geovr data synth`` on the ``geovr`` sub-parser action."""
    data = subparsers.add_parser(
        "data",
        help="data utilities (synthetic world)",
        description="Data utilities.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser(
        "synth",
        help="write a synthetic VSI-style dataset (videos, geometry, qa.jsonl)",
        description="Write a synthetic VSI-style dataset to disk: videos, geometry, scene "
        "files and qa.jsonl (readable by the video_qa dataset).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output directory (created; must be empty or a previous run)")
    p.add_argument("--scenes", type=int, default=10, help="number of scenes (default 10)")
    p.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=[224, 224],
        metavar=("H", "W"),
        help="frame size, both even (default 224 224)",
    )
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--fps", type=int, default=10, help="video frame rate (default 10)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=f"processes making scenes, one thread each (default: all cores, here {os.cpu_count()}); "
        "the output does not depend on it",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="render through torch.compile (~3x faster; compiles once, seconds with a warm cache, "
        "~30 s cold). Default: compile when the job renders at least 2000 frames of 224x224 "
        "(or as many pixels); falls back to eager rendering with a warning when compiling fails",
    )
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default=DEFAULT_PRESET,
        help=f"x264 preset of the videos at crf 16 (default {DEFAULT_PRESET}; slower presets make "
        "smaller files at the same quality)",
    )
    p.add_argument(
        "--walls",
        choices=WALLS,
        default="uniform",
        help="wall painting: uniform (default; every wall in the room's colour) or compass (each of the four "
        "walls in its own fixed hue, so a view shows which way the camera faces)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--format",
        choices=("vsi", "conversations", "wds"),
        default="vsi",
        help="also write LLaVA-style conversations.jsonl (conversations) and tar shards (wds); see geovr.data.writers",
    )
    p.add_argument("--shard-size", type=int, default=8, help="records per tar shard with --format wds (default 8)")
    p.set_defaults(func=run)
    from geovr.data.inspect import add_parser as add_inspect

    add_inspect(sub)


def run(args) -> int:
    """Entry point of ``geovr data synth`` (returns the exit code); ends with a summary of what it wrote."""
    summary = synthesize(
        args.out,
        scenes=args.scenes,
        frames=args.frames,
        size=tuple(args.size),
        seed=args.seed,
        fps=args.fps,
        progress=not args.no_progress,
        compiled=getattr(args, "compile", None),
        workers=getattr(args, "workers", None),
        preset=getattr(args, "preset", DEFAULT_PRESET),
        fmt=getattr(args, "format", "vsi"),
        shard_size=getattr(args, "shard_size", 8),
        walls=getattr(args, "walls", "uniform"),
    )
    print(summary_text(summary), file=sys.stderr)
    return 0


def summary_text(summary: dict) -> str:
    """Human summary of :func:`synthesize`'s result."""
    types = ", ".join(f"{k} {v}" for k, v in summary["question_types"].items())
    how = (
        f"{summary.get('workers', 1)} worker(s), {'compiled' if summary.get('compiled') else 'eager'} "
        f"renderer, x264 {summary.get('preset', DEFAULT_PRESET)}"
    )
    return (
        f"geovr data synth: {summary['out']}: {summary['scenes']} scenes ({summary['written']} rendered now, "
        f"{summary['scenes'] - summary['written']} already there), {summary['frames']} frames of "
        f"{summary['size'][0]}x{summary['size'][1]}, {summary['questions']} questions in qa.jsonl ({types}); "
        f"{summary['seconds']:.1f} s, {summary['frames_per_second']:.0f} frames/s end to end ({how})\n"
        f'  read it with: [data.train] component = "video_qa", annotations = "{summary["out"]}/qa.jsonl", '
        f'video_root = "{summary["out"]}/videos", geometry_root = "{summary["out"]}/geometry"'
    )


def _check_dir(out: Path, options: dict) -> None:
    marker = out / MARKER
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous != options:
            raise UsageError(
                f"{out} holds a synthetic dataset made with different options {previous}; "
                f"choose another --out or delete it"
            )
    elif out.exists() and any(out.iterdir()):
        raise UsageError(
            f"refusing to write into non-empty directory {out} (not created by 'geovr data synth'); "
            f"choose an empty or new --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(options, sort_keys=True))


def _validate(scenes, frames, size, fps, workers, preset, fmt, shard_size, walls="uniform") -> None:
    """Every problem with the options at once, as one :class:`UsageError`."""
    from geovr.data.writers import FORMATS

    problems = []
    if not (isinstance(scenes, int) and scenes >= 1):
        problems.append(f"--scenes must be an integer >= 1, got {scenes!r}")
    if not (isinstance(frames, int) and frames >= 1):
        problems.append(f"--frames must be an integer >= 1, got {frames!r}")
    if len(size) != 2 or any(not isinstance(v, int) or v < 2 or v % 2 for v in size):
        problems.append(
            f"--size must be two even numbers >= 2 (H.264 needs even sizes), got {' '.join(map(str, size))}"
        )
    if not (isinstance(fps, int) and fps >= 1):
        problems.append(f"--fps must be an integer >= 1, got {fps!r}")
    if workers is not None and not (isinstance(workers, int) and workers >= 1):
        problems.append(f"--workers must be an integer >= 1 (default: all {os.cpu_count()} cores), got {workers!r}")
    if preset not in PRESETS:
        problems.append(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if fmt not in FORMATS:
        problems.append(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not (isinstance(shard_size, int) and shard_size >= 1):
        problems.append(f"--shard-size must be an integer >= 1, got {shard_size!r}")
    if walls not in WALLS:
        problems.append(f"--walls must be one of {', '.join(WALLS)}, got {walls!r}")
    if problems:
        raise UsageError("geovr data synth: " + "; ".join(problems))


class _Job(NamedTuple):
    """One scene to make (picklable: sent to a worker process)."""

    out: str
    scene: int  # the scene's index in the dataset
    seed: int
    frames: int
    size: tuple[int, int]
    fps: int
    preset: str
    compiled: bool
    images: bool  # also write images/<scene>.jpg (conversation formats)
    walls: str = "uniform"  # see geovr.data.synthetic.scene.generate_scene


def _paths(out, index: int) -> dict:
    name = f"scene_{index:05d}"
    return {
        k: Path(out) / k / f"{name}{ext}"
        for k, ext in (("videos", ".mp4"), ("geometry", ".safetensors"), ("scenes", ".json"))
    }


def _done(out, index: int) -> bool:
    return all(p.is_file() for p in _paths(out, index).values())


def synthesize(
    out,
    *,
    scenes: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    fps: int = 10,
    progress: bool = True,
    compiled: bool | None = None,
    workers: int | None = None,
    preset: str = DEFAULT_PRESET,
    fmt: str = "vsi",
    shard_size: int = 8,
    walls: str = "uniform",
) -> dict:
    """Write ``scenes`` scenes to ``out`` (layout in the module docstring; ``fmt`` ``"conversations"`` /
    ``"wds"`` also writes those layouts, :func:`geovr.data.writers.convert`); skips scenes already written
    by a previous identical run.

    ``workers``: processes making scenes (``None``: ``os.cpu_count()``; capped at the scenes to render),
    each with one torch thread; ``1`` makes them here (one torch thread) with a writer thread overlapping
    encoding with the next render. The files are identical for every ``workers``. ``compiled``: ``True`` / ``False`` force the
    ``torch.compile`` renderer on / off, ``None`` (default) compiles when the scenes to render hold at
    least :data:`AUTO_COMPILE_PIXELS` pixels or ``GEOVR_COMPILE_RENDERER`` says so; a compilation failure
    warns and renders eagerly (compiled and eager frames agree up to float rounding, so a run keeps one
    mode). ``preset``: x264 preset (crf 16, one x264 thread per video, so the bytes do not depend on the
    machine). ``walls``: ``"uniform"`` or ``"compass"`` (see :func:`geovr.data.synthetic.scene.generate_scene`).

    Returns ``{"out", "scenes", "written", "frames", "size", "questions", "question_types": {type: n},
    "seconds", "frames_per_second", "workers", "compiled", "preset", "format"}``; ``frames_per_second``
    counts the frames rendered in this call over the whole call (rendering, questions, encoding, writing
    every file and layout, and any compilation)."""
    import collections
    import time

    _validate(scenes, frames, tuple(size), fps, workers, preset, fmt, shard_size, walls)
    H, W = size
    out = Path(out)
    options = {"scenes": scenes, "frames": frames, "size": [H, W], "seed": seed, "fps": fps}
    if walls != "uniform":  # the default keeps the markers of existing datasets
        options["walls"] = walls
    _check_dir(out, options)
    for sub in ("videos", "geometry", "scenes"):
        (out / sub).mkdir(exist_ok=True)
    _import_worker_modules()  # before forking: workers inherit them instead of importing torch each
    t0 = time.perf_counter()
    todo = [i for i in range(scenes) if not _done(out, i)]
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    compiled = _want_compiled(compiled, len(todo) * frames * H * W) if todo else False
    if compiled:
        compiled = _warm_up((H, W), one_thread=n_workers > 1)
    images = fmt in ("conversations", "wds")
    jobs = [_Job(str(out), i, seed, frames, (H, W), fps, preset, compiled, images, walls) for i in range(scenes)]
    bar = _progress(scenes, progress)
    try:
        if n_workers == 1:
            results = _make_here(jobs, bar)
        else:
            results = _make_in_pool(jobs, n_workers, bar)
    finally:
        bar.close()
    records = [rec for recs, _ in results for rec in recs]
    with open(out / "qa.jsonl.tmp", "w", encoding="utf-8") as f:
        for n, rec in enumerate(records):
            f.write(json.dumps({**rec, "id": n}) + "\n")
    os.replace(out / "qa.jsonl.tmp", out / "qa.jsonl")
    if fmt != "vsi":
        from geovr.data.writers import convert

        convert(out, fmt, shard_size=shard_size, progress=progress)
    seconds = time.perf_counter() - t0
    written = sum(rendered for _, rendered in results)
    counts = collections.Counter(rec["question_type"] for rec in records)
    from geovr.data.configs import QUESTION_TYPES

    return {
        "out": str(out),
        "scenes": scenes,
        "written": written,
        "frames": scenes * frames,
        "size": [H, W],
        "questions": len(records),
        "question_types": {t: counts[t] for t in QUESTION_TYPES if counts[t]},
        "seconds": seconds,
        "frames_per_second": written * frames / seconds if written else 0.0,
        "workers": n_workers,
        "compiled": bool(compiled),
        "preset": preset,
        "format": fmt,
    }


def _import_worker_modules() -> None:
    import av  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401

    import geovr.data.synthetic.camera  # noqa: F401
    import geovr.data.synthetic.dataset  # noqa: F401
    import geovr.data.synthetic.qa  # noqa: F401
    import geovr.data.synthetic.render  # noqa: F401
    import geovr.data.video  # noqa: F401
    import geovr.data.writers  # noqa: F401


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="geovr data synth", unit="scene", disable=not enabled)


def _want_compiled(compiled: bool | None, pixels: int) -> bool:
    if compiled is not None:
        return bool(compiled)
    env = os.environ.get("GEOVR_COMPILE_RENDERER", "").strip().lower()
    if env:
        return env in {"1", "true", "yes", "on"}
    return pixels >= AUTO_COMPILE_PIXELS


def _warm_up(size: tuple[int, int], *, one_thread: bool) -> bool:
    """Compile the renderer's kernels at ``size`` here (with one torch thread when the kernels will run
    in single-threaded forked workers); ``False`` with a warning when ``torch.compile`` fails."""
    import warnings

    import torch

    from geovr.data.synthetic.render import warm_up

    threads = torch.get_num_threads()
    try:
        if one_thread:
            torch.set_num_threads(1)
        warm_up(size)
        return True
    except Exception as exc:  # noqa: BLE001 - any compiler/toolchain failure means: render eagerly
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        warnings.warn(
            f"geovr data synth: torch.compile does not work here ({type(exc).__name__}: {first}); "
            f"rendering eagerly (pass --no-compile to skip the attempt)",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    finally:
        torch.set_num_threads(threads)


def _make_here(jobs: list[_Job], bar) -> list[tuple[list[dict], bool]]:
    """Single worker: render in this thread (one torch thread, as a pool worker: torch's OpenMP threads
    next to a busy writer thread stall) while a writer thread encodes and saves the previous scene (at
    most two scenes wait)."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    import torch

    pending: collections.deque = collections.deque()
    results = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with _restore_threads(threads), ThreadPoolExecutor(max_workers=1, thread_name_prefix="geovr-synth-writer") as pool:
        for job in jobs:
            if _done(job.out, job.scene):
                pending.append(pool.submit(_existing, job))
            else:
                pending.append(pool.submit(_write_scene, job, _render_scene(job)))
            while len(pending) > 2:  # bounded memory: wait for the oldest scene
                results.append(pending.popleft().result())
                bar.update()
        while pending:
            results.append(pending.popleft().result())
            bar.update()
    return results


class _restore_threads:
    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.n)


def _make_in_pool(jobs: list[_Job], workers: int, bar) -> list[tuple[list[dict], bool]]:
    """``workers`` processes, each making whole scenes with one thread; results in scene order. Forked on
    Linux (the workers inherit the imports and the compiled kernels), spawned elsewhere."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
    try:
        futures = {pool.submit(_scene_job, job): job.scene for job in jobs}
        results: dict[int, tuple[list[dict], bool]] = {}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[job.scene] for job in jobs]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; a forked worker must not start an OpenMP team


def _scene_job(job: _Job) -> tuple[list[dict], bool]:
    """Worker job: make one scene (or, when its files exist, only its questions); ``(records, rendered)``."""
    if _done(job.out, job.scene):
        return _existing(job)
    return _write_scene(job, _render_scene(job))


def _existing(job: _Job) -> tuple[list[dict], bool]:
    """Questions of a scene written by a previous run (from its saved instance ids)."""
    from safetensors.torch import load_file

    from geovr.data.synthetic.dataset import scene_seed
    from geovr.data.synthetic.scene import generate_scene

    s = scene_seed(job.seed, job.scene)
    scene = generate_scene(s, name=_paths(job.out, job.scene)["scenes"].stem, walls=job.walls)
    ids = load_file(str(_paths(job.out, job.scene)["geometry"]))["ids"]
    if job.images:
        _images(job)
    return _questions(scene, ids, s), False


def _render_scene(job: _Job) -> dict:
    """Scene, camera path and frames of ``job``: ``{"scene", "seed", "rgb": [S,3,H,W] float in [0,1],
    "geometry": {depth [S,H,W], ids [S,H,W] int32, intrinsics [S,3,3], extrinsics [S,3,4]}, "meta"}``."""
    import torch

    from geovr.data.synthetic.camera import make_trajectory
    from geovr.data.synthetic.dataset import scene_seed
    from geovr.data.synthetic.render import render
    from geovr.data.synthetic.scene import generate_scene

    H, W = job.size
    s = scene_seed(job.seed, job.scene)
    scene = generate_scene(s, name=_paths(job.out, job.scene)["scenes"].stem, walls=job.walls)
    traj = make_trajectory(scene, job.frames, (H, W), s)
    r = render(scene, traj.intrinsics, traj.extrinsics, (H, W), compiled=job.compiled)
    meta = {
        **scene.to_dict(),
        "camera": {"kind": traj.kind, "fov_w": traj.fov_w, "image_size": [H, W], "num_frames": job.frames},
    }
    geometry = {
        "depth": r["depth"].contiguous(),
        "ids": r["ids"].contiguous(),
        "intrinsics": torch.as_tensor(traj.intrinsics, dtype=torch.float32),
        "extrinsics": torch.as_tensor(traj.extrinsics, dtype=torch.float32),
    }
    return {"scene": scene, "seed": s, "rgb": r["rgb"], "geometry": geometry, "meta": meta}


def _questions(scene, ids, seed: int) -> list[dict]:
    from geovr.data.synthetic.qa import generate_questions

    return generate_questions(scene, ids, seed=seed)


def _images(job: _Job) -> None:
    from geovr.data.writers import write_images

    write_images(Path(job.out), [_paths(job.out, job.scene)["videos"].stem])


def _write_scene(job: _Job, made: dict) -> tuple[list[dict], bool]:
    """Questions, video (x264 ``job.preset``, one thread), geometry and scene file of one scene (each
    written to a temporary name, then renamed), and with ``job.images`` its first frame as a JPEG;
    returns ``(records, True)``."""
    from safetensors.torch import save_file

    from geovr.data.video import write_video

    paths = _paths(job.out, job.scene)
    records = _questions(made["scene"], made["geometry"]["ids"], made["seed"])
    tmp = {k: p.with_name(p.stem + ".tmp" + p.suffix) for k, p in paths.items()}
    write_video(tmp["videos"], made["rgb"], fps=job.fps, preset=job.preset, threads=1)
    save_file(made["geometry"], str(tmp["geometry"]))
    tmp["scenes"].write_text(json.dumps(made["meta"], indent=1))
    for k in paths:
        os.replace(tmp[k], paths[k])
    if job.images:
        _images(job)
    return records, True
