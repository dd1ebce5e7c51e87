"""``geovr data synth``: write a synthetic VSI-style dataset to disk.

Layout of ``--out DIR``::

    DIR/videos/<scene>.mp4            H.264 video of the rendered frames
    DIR/geometry/<scene>.safetensors  depth [S,H,W] (m), intrinsics [S,3,3], extrinsics [S,3,4], ids [S,H,W]
    DIR/scenes/<scene>.json           room, objects and camera path of the scene
    DIR/qa.jsonl                      VSI-format questions about all scenes
    DIR/.geovr-synth.json             marker with the options (makes re-runs idempotent)

The ``video_qa`` dataset reads this layout directly (``annotations = "DIR/qa.jsonl"``,
``video_root = "DIR/videos"``, ``geometry_root = "DIR/geometry"``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from geovr.errors import UsageError

MARKER = ".geovr-synth.json"
EPILOG = """examples:
  geovr data synth --out data/synth --scenes 100 --frames 32 --size 224 224 --seed 0
  geovr data synth --out /tmp/tiny --scenes 2 --frames 8 --size 64 96
  geovr data synth --out data/big --scenes 1000 --frames 32 --compile
  (re-running the same command resumes/skips finished scenes; a non-empty directory that was not
  created by this command is never overwritten)"""


def add_parser(subparsers) -> None:
    """Register ``geovr data synth`` on the ``geovr`` sub-parser action."""
    data = subparsers.add_parser("data", help="data utilities (synthetic world)",
                                 description="Data utilities.", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("synth", help="write a synthetic VSI-style dataset (videos, geometry, qa.jsonl)",
                       description="Write a synthetic VSI-style dataset to disk: videos, geometry, scene "
                                   "files and qa.jsonl (readable by the video_qa dataset).", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (created; must be empty or a previous run)")
    p.add_argument("--scenes", type=int, default=10, help="number of scenes (default 10)")
    p.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    p.add_argument("--size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"),
                   help="frame size, both even (default 224 224)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--fps", type=int, default=10, help="video frame rate (default 10)")
    p.add_argument("--compile", action="store_true",
                   help="render through torch.compile (faster for many frames; ~30 s compile on first use)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--format", choices=("vsi", "conversations", "wds"), default="vsi",
                   help="also write LLaVA-style conversations.jsonl (conversations) and tar shards (wds); "
                        "see geovr.data.writers")
    p.add_argument("--shard-size", type=int, default=8, help="records per tar shard with --format wds (default 8)")
    p.set_defaults(func=run)
    from geovr.data.inspect import add_parser as add_inspect

    add_inspect(sub)


def run(args) -> int:
    """Entry point of ``geovr data synth`` (returns the exit code); ends with a summary of what it wrote."""
    summary = synthesize(args.out, scenes=args.scenes, frames=args.frames, size=tuple(args.size), seed=args.seed,
                         fps=args.fps, progress=not args.no_progress, compiled=args.compile)
    if getattr(args, "format", "vsi") != "vsi":
        from geovr.data.writers import convert

        convert(args.out, args.format, shard_size=args.shard_size, progress=not args.no_progress)
    print(summary_text(summary), file=sys.stderr)
    return 0


def summary_text(summary: dict) -> str:
    """Human summary of :func:`synthesize`'s result."""
    types = ", ".join(f"{k} {v}" for k, v in summary["question_types"].items())
    return (f"geovr data synth: {summary['out']}: {summary['scenes']} scenes ({summary['written']} rendered now, "
            f"{summary['scenes'] - summary['written']} already there), {summary['frames']} frames of "
            f"{summary['size'][0]}x{summary['size'][1]}, {summary['questions']} questions in qa.jsonl ({types}); "
            f"{summary['seconds']:.1f} s, {summary['frames_per_second']:.0f} frames/s rendered\n"
            f"  read it with: [data.train] component = \"video_qa\", annotations = \"{summary['out']}/qa.jsonl\", "
            f"video_root = \"{summary['out']}/videos\", geometry_root = \"{summary['out']}/geometry\"")


def _check_dir(out: Path, options: dict) -> None:
    marker = out / MARKER
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous != options:
            raise UsageError(f"{out} holds a synthetic dataset made with different options {previous}; "
                             f"choose another --out or delete it")
    elif out.exists() and any(out.iterdir()):
        raise UsageError(f"refusing to write into non-empty directory {out} (not created by 'geovr data synth'); "
                         f"choose an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(options, sort_keys=True))


def synthesize(out, *, scenes: int, frames: int, size: tuple[int, int], seed: int, fps: int = 10,
               progress: bool = True, compiled: bool = False, preset: str = "veryfast") -> dict:
    """Write ``scenes`` scenes to ``out`` (layout in the module docstring); skips scenes already
    written by a previous identical run (``compiled`` only changes the speed, see
    :func:`geovr.data.synthetic.render.render`).

    Rendering runs in this thread while a writer thread generates each scene's questions, encodes its
    video (x264 ``preset``) and saves its geometry, so the CPU work overlaps (at most two scenes wait).
    Returns ``{"out", "scenes", "written", "frames", "size", "questions", "question_types": {type: n},
    "seconds", "frames_per_second"}`` (frames per second over the scenes rendered in this call)."""
    import collections
    import time
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from safetensors.torch import load_file
    from tqdm import tqdm

    from geovr.data.synthetic.camera import make_trajectory
    from geovr.data.synthetic.dataset import scene_seed
    from geovr.data.synthetic.render import render
    from geovr.data.synthetic.scene import generate_scene

    H, W = size
    if scenes < 1 or frames < 1:
        raise UsageError(f"--scenes and --frames must be >= 1, got {scenes} and {frames}")
    if H < 2 or W < 2 or H % 2 or W % 2:
        raise UsageError(f"--size must be two even numbers >= 2 (H.264 needs even sizes), got {H} {W}")
    out = Path(out)
    _check_dir(out, {"scenes": scenes, "frames": frames, "size": [H, W], "seed": seed, "fps": fps})
    for sub in ("videos", "geometry", "scenes"):
        (out / sub).mkdir(exist_ok=True)
    t0 = time.perf_counter()
    written = 0
    pending: collections.deque = collections.deque()
    results: list[list[dict]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geovr-synth-writer") as pool:
        for i in tqdm(range(scenes), desc="geovr data synth", unit="scene", disable=not progress):
            s = scene_seed(seed, i)
            name = f"scene_{i:05d}"
            paths = {k: out / k / f"{name}{ext}" for k, ext in
                     (("videos", ".mp4"), ("geometry", ".safetensors"), ("scenes", ".json"))}
            scene = generate_scene(s, name=name)
            if all(p.is_file() for p in paths.values()):
                ids = load_file(str(paths["geometry"]))["ids"]
                pending.append(pool.submit(_questions, scene, ids, s))
            else:
                traj = make_trajectory(scene, frames, (H, W), s)
                r = render(scene, traj.intrinsics, traj.extrinsics, (H, W), compiled=compiled)
                meta = {**scene.to_dict(), "camera": {"kind": traj.kind, "fov_w": traj.fov_w,
                                                      "image_size": [H, W], "num_frames": frames}}
                geometry = {"depth": r["depth"].contiguous(), "ids": r["ids"].contiguous(),
                            "intrinsics": torch.as_tensor(traj.intrinsics, dtype=torch.float32),
                            "extrinsics": torch.as_tensor(traj.extrinsics, dtype=torch.float32)}
                pending.append(pool.submit(_write_scene, paths, scene, s, r["rgb"], geometry, meta, fps, preset))
                written += 1
            while len(pending) > 2:  # bounded memory: wait for the oldest scene
                results.append(pending.popleft().result())
        while pending:
            results.append(pending.popleft().result())
    records = [rec for recs in results for rec in recs]
    with open(out / "qa.jsonl.tmp", "w", encoding="utf-8") as f:
        for n, rec in enumerate(records):
            f.write(json.dumps({**rec, "id": n}) + "\n")
    os.replace(out / "qa.jsonl.tmp", out / "qa.jsonl")
    seconds = time.perf_counter() - t0
    counts = collections.Counter(rec["question_type"] for rec in records)
    from geovr.data.configs import QUESTION_TYPES

    return {"out": str(out), "scenes": scenes, "written": written, "frames": scenes * frames, "size": [H, W],
            "questions": len(records), "question_types": {t: counts[t] for t in QUESTION_TYPES if counts[t]},
            "seconds": seconds, "frames_per_second": written * frames / seconds if written else 0.0}


def _questions(scene, ids, seed: int) -> list[dict]:
    from geovr.data.synthetic.qa import generate_questions

    return generate_questions(scene, ids, seed=seed)


def _write_scene(paths: dict, scene, seed: int, rgb, geometry: dict, meta: dict, fps: int, preset: str) -> list[dict]:
    """Writer-thread job: questions, video, geometry and scene file of one scene (each written to a
    temporary name, then renamed); returns the scene's questions."""
    from safetensors.torch import save_file

    from geovr.data.video import write_video

    records = _questions(scene, geometry["ids"], seed)
    tmp = {k: p.with_name(p.stem + ".tmp" + p.suffix) for k, p in paths.items()}
    write_video(tmp["videos"], rgb, fps=fps, preset=preset)
    save_file(geometry, str(tmp["geometry"]))
    tmp["scenes"].write_text(json.dumps(meta, indent=1))
    for k in paths:
        os.replace(tmp[k], paths[k])
    return records
