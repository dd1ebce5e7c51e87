"""``geovr data inspect PATH``: what a data source holds, before a long run reads it.

PATH is a JSON array / JSONL file of conversation records or of VSI-format questions, one tar shard, a
glob of shards, or a directory holding shards (``*.tar``). Prints record counts (bad records by reason,
with the first few ``file:line`` / ``shard:key`` places), question types, the histogram of frame counts
the released sampling gives (``--fps``/``--min-frames``/``--max-frames``, from the video headers only:
nothing is decoded) and the first records. ``--json`` prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
from collections import Counter
from pathlib import Path

from geovr.errors import DataError, UsageError

EPILOG = """examples:
  geovr data inspect data/synth/conversations.jsonl
  geovr data inspect 'data/vsi590k/shards/*.tar' --json
  geovr data inspect data/synth/qa.jsonl --video-root data/synth/videos
  geovr data inspect data/vsi590k/vsi_590k.jsonl --video-root /data/VSI-590K --limit 2000"""


def add_parser(sub) -> None:
    """Register ``inspect`` on the ``geovr data`` sub-parsers."""
    p = sub.add_parser(
        "inspect",
        help="counts, question types, frame-count histogram and first records of a data source",
        description=__doc__.split("\n\n", 1)[1],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", help="JSON/JSONL file, tar shard, glob of shards or directory of shards")
    p.add_argument(
        "--video-root",
        help="folder the records' video paths are under (default: the file's folder; "
        "for VSI-format files its videos/ folder)",
    )
    p.add_argument("--fps", type=float, default=2.0, help="sampling rate for the histogram (default 2)")
    p.add_argument("--min-frames", type=int, default=4, help="default 4")
    p.add_argument("--max-frames", type=int, default=32, help="default 32")
    p.add_argument("--head", type=int, default=3, help="records to show (default 3)")
    p.add_argument("--limit", type=int, default=None, help="look at the first N records only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _frames(src, args, where: str) -> int:
    import av

    from geovr.data.seek import probe
    from geovr.data.video import fps_indices

    try:
        with av.open(src) as container:
            total, rate, _, _ = probe(container, where)
    except av.error.FFmpegError as exc:
        raise DataError(f"{where}: cannot open video: {exc}") from exc
    return len(fps_indices(total, rate, fps=args.fps, min_frames=args.min_frames, max_frames=args.max_frames))


def _items(path: str, args):
    """Yield ``(where, record | None, problem | None, media)``; media = path, ``(ext, bytes)`` or ``None``."""
    from geovr.data.conversations import iter_json_records
    from geovr.data.shards import expand_shards, index_shard, read_member

    p = Path(path)
    if p.is_file() and p.suffix in (".json", ".jsonl"):
        for where, rec, problem in iter_json_records(p):
            yield where, rec, problem, None
        return
    pattern = str(p / "*.tar") if p.is_dir() else path
    try:
        shards = expand_shards(pattern)
    except DataError as exc:
        raise UsageError(
            f"{path}: not a JSON/JSONL file, a tar shard, a glob of shards or a folder of shards ({exc})"
        ) from exc
    for shard in shards:
        for s in index_shard(shard):
            if "json" not in s.members:
                yield s.where, None, f"no .json member (has {sorted(s.members)})", None
                continue
            try:
                rec = json.loads(read_member(s, "json"))
            except ValueError as exc:
                yield s.where, None, f"invalid JSON: {exc}", None
                continue
            ext = s.media_ext()
            yield s.where, rec, None, (ext, read_member(s, ext)) if ext else None


def inspect_source(path: str, args) -> dict:
    """The report of ``geovr data inspect`` as a dict (see the module docstring)."""
    from tqdm import tqdm

    from geovr.data.conversations import media_of, record_problem, turns_of

    report: dict = {
        "path": path,
        "format": None,
        "records": 0,
        "valid": 0,
        "bad": {},
        "bad_examples": [],
        "videos": 0,
        "images": 0,
        "turns": Counter(),
        "question_types": Counter(),
        "frame_histogram": Counter(),
        "unreadable_videos": 0,
        "first_records": [],
    }
    root = Path(args.video_root) if args.video_root else None
    bad: Counter = Counter()
    for n, (where, rec, problem, media) in enumerate(
        tqdm(_items(path, args), desc="geovr data inspect", unit="record", disable=args.no_progress or args.json)
    ):
        if args.limit is not None and n >= args.limit:
            break
        report["records"] += 1
        vsi = isinstance(rec, dict) and "scene_name" in rec and "conversations" not in rec
        report["format"] = report["format"] or ("vsi" if vsi else "conversations")
        if problem is None and not vsi:
            problem = record_problem(rec)
        if problem is None and vsi and not all(k in rec for k in ("question", "question_type", "ground_truth")):
            problem = "VSI record lacks question / question_type / ground_truth"
        if problem:
            bad["invalid_json" if rec is None else "bad_record"] += 1
            if len(report["bad_examples"]) < 5:
                report["bad_examples"].append(f"{where}: {problem}")
            continue
        report["valid"] += 1
        if len(report["first_records"]) < args.head:
            report["first_records"].append({"where": where, **rec})
        report["question_types"][str(rec.get("question_type", "conversation"))] += 1
        if vsi:
            base = root or Path(where.rsplit(":", 1)[0]).parent / "videos"
            media = base / f"{rec['scene_name']}.mp4"
            is_video = True
        else:
            report["turns"][len(rec["conversations"]) // 2] += 1
            turns_of(rec)
            kind, rel = media_of(rec)
            is_video = kind == "video"
            if media is None:
                media = (root or Path(where.rsplit(":", 1)[0]).parent) / rel
        report["videos" if is_video else "images"] += 1
        if not is_video:
            report["frame_histogram"][1] += 1
            continue
        try:
            src = io.BytesIO(media[1]) if isinstance(media, tuple) else str(media)
            if isinstance(src, str) and not Path(src).is_file():
                raise DataError(f"video not found: {src}")
            report["frame_histogram"][_frames(src, args, where)] += 1
        except DataError as exc:
            report["unreadable_videos"] += 1
            if len(report["bad_examples"]) < 5:
                report["bad_examples"].append(f"{where}: {exc}")
    report["bad"] = dict(bad)
    for key in ("turns", "question_types", "frame_histogram"):
        report[key] = {str(k): v for k, v in sorted(report[key].items())}
    return report


def run(args) -> int:
    """Entry point of ``geovr data inspect``."""
    p = args.path
    if not (Path(p).exists() or glob.has_magic(p) or "{" in p):
        raise UsageError(f"{p}: no such file or directory")
    report = inspect_source(p, args)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"{report['path']}  ({report['format'] or 'empty'} format)")
    print(
        f"records: {report['records']}  valid: {report['valid']}  videos: {report['videos']}  "
        f"images: {report['images']}  bad: {report['bad'] or 0}  unreadable videos: {report['unreadable_videos']}"
    )
    for line in report["bad_examples"]:
        print(f"  ! {line}")
    if report["turns"]:
        print("exchanges per conversation: " + ", ".join(f"{k}: {v}" for k, v in report["turns"].items()))
    print("question types:")
    for k, v in sorted(report["question_types"].items(), key=lambda kv: -kv[1]):
        print(f"  {v:8d}  {k}")
    print(f"frames per sample at {args.fps:g} fps, {args.min_frames}-{args.max_frames} frames:")
    peak = max(report["frame_histogram"].values(), default=1)
    for k, v in report["frame_histogram"].items():
        print(f"  {k:>4} frames  {v:8d}  {'#' * max(1, round(40 * v / peak))}")
    print(f"first {len(report['first_records'])} record(s):")
    for rec in report["first_records"]:
        print("  " + json.dumps(rec, ensure_ascii=False)[:400])
    return 0
