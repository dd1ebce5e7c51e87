"""Writers of the conversation layouts, from a synthetic dataset written by ``geovr data synth``.

``geovr data synth --format conversations`` adds, next to the VSI layout (``videos/``, ``qa.jsonl``)::

    DIR/conversations.jsonl     LLaVA-style records (VSI-590K's layout), video paths relative to DIR
    DIR/images/<scene>.jpg      first frame of each scene, for the image records

``--format wds`` also packs those records into WebDataset tar shards (``webdataset.TarWriter``)::

    DIR/shards/shard-000000.tar   <key>.json (the record) + <key>.mp4 (its video) or <key>.jpg (image)

Records follow :mod:`geovr.data.conversations`: the first human turn starts with the ``<image>``
placeholder and the ``These are frames of a video.`` preamble (as in VSI-590K, so readers must clean
them); every third question of a scene is folded into a two-exchange conversation; each scene also has
one image record (``question_type = "image_caption"``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from geovr.errors import UsageError

FORMATS = ("vsi", "conversations", "wds")
POST_PROMPT = "Answer with the option's letter from the given choices directly."
NUMERIC_PROMPT = "Please answer the question using a single word or phrase."


def _human(question: str, options, first: bool) -> str:
    text = question + ("\n" + "\n".join(options) + "\n" + POST_PROMPT if options else "\n" + NUMERIC_PROMPT)
    return ("<image>\nThese are frames of a video.\n" + text) if first else text


def conversation_records(vsi_records: list[dict], *, with_images: bool = True) -> list[dict]:
    """VSI-format records → conversation records (see the module docstring), in scene order."""
    by_scene: dict[str, list[dict]] = defaultdict(list)
    for rec in vsi_records:
        by_scene[str(rec["scene_name"])].append(rec)
    out: list[dict] = []
    for scene, recs in by_scene.items():
        video = f"videos/{scene}.mp4"
        k = 0
        while k < len(recs):
            group = recs[k : k + 2] if k % 3 == 2 else recs[k : k + 1]
            turns = []
            for n, r in enumerate(group):
                turns.append({"from": "human", "value": _human(r["question"], r.get("options"), n == 0)})
                turns.append({"from": "gpt", "value": str(r["ground_truth"])})
            out.append(
                {
                    "id": f"{scene}-{len(out):06d}",
                    "video": video,
                    "question_type": group[0]["question_type"],
                    "conversations": turns,
                }
            )
            k += len(group)
        if with_images:
            out.append(
                {
                    "id": f"{scene}-image",
                    "image": f"images/{scene}.jpg",
                    "question_type": "image_caption",
                    "conversations": [
                        {"from": "human", "value": "<image>\nWhat kind of place is this?"},
                        {"from": "gpt", "value": "An indoor room."},
                    ],
                }
            )
    return out


def write_images(root: Path, scenes: list[str]) -> None:
    """``root/images/<scene>.jpg``: the first decoded frame of ``root/videos/<scene>.mp4`` of each scene
    (JPEG quality 95; scenes whose image exists are skipped; written to a temporary name, then renamed)."""
    from PIL import Image

    from geovr.data.video import first_frame

    (root / "images").mkdir(exist_ok=True)
    for scene in scenes:
        dest = root / "images" / f"{scene}.jpg"
        if dest.is_file():
            continue
        arr = first_frame(root / "videos" / f"{scene}.mp4")  # [H,W,3] uint8
        tmp = dest.with_suffix(".tmp.jpg")
        Image.fromarray(arr).save(tmp, quality=95)
        os.replace(tmp, dest)


def write_conversations(root: str | os.PathLike, *, array: bool = False, name: str | None = None) -> Path:
    """Write ``conversations.jsonl`` (or a JSON array ``conversations.json`` with ``array``) from
    ``root/qa.jsonl``, plus the image records' frames; returns the annotation path."""
    from geovr.data.jsonl import iter_jsonl

    root = Path(root)
    if not (root / "qa.jsonl").is_file():
        raise UsageError(f"{root}: no qa.jsonl (write the synthetic dataset first: geovr data synth --out {root})")
    records = conversation_records([rec for _, rec in iter_jsonl(root / "qa.jsonl")])
    write_images(root, sorted({Path(r["image"]).stem for r in records if "image" in r}))
    dest = root / (name or ("conversations.json" if array else "conversations.jsonl"))
    tmp = dest.with_name(dest.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        if array:
            fh.write("[\n" + ",\n".join(json.dumps(r, indent=1) for r in records) + "\n]\n")
        else:
            fh.writelines(json.dumps(r) + "\n" for r in records)
    os.replace(tmp, dest)
    return dest


def write_shards(
    root: str | os.PathLike, *, shard_size: int = 8, out: str | os.PathLike | None = None, progress: bool = False
) -> list[Path]:
    """Pack ``root/conversations.jsonl`` and its media into tar shards of ``shard_size`` samples under
    ``out`` (default ``root/shards``) with :class:`webdataset.TarWriter`; returns the shard paths. Members are
    dated 0 (1970-01-01), so the same records give the same bytes. Lines are
    stored as given (a malformed one too, and without a media member when its file is missing), so the
    readers' validation can be exercised on shards."""
    import webdataset as wds
    from tqdm import tqdm

    root = Path(root)
    ann = root / "conversations.jsonl"
    if not ann.is_file():
        ann = write_conversations(root)
    if shard_size < 1:
        raise UsageError(f"--shard-size must be >= 1, got {shard_size}")
    out = Path(out) if out is not None else root / "shards"
    out.mkdir(parents=True, exist_ok=True)
    lines = [line for line in ann.read_text(encoding="utf-8").splitlines() if line.strip()]
    mtime = 0.0  # fixed member times: the same records give the same bytes
    paths: list[Path] = []
    writer = None
    try:
        for n, line in enumerate(tqdm(lines, desc="geovr data synth (shards)", unit="record", disable=not progress)):
            if n % shard_size == 0:
                if writer is not None:
                    writer.close()
                paths.append(out / f"shard-{n // shard_size:06d}.tar")
                writer = wds.TarWriter(str(paths[-1]), mtime=mtime)
            assert writer is not None  # opened at n = 0
            sample = {"__key__": f"{n:06d}", "json": line.encode("utf-8")}  # as given: readers validate
            try:
                rec = json.loads(line)
                media = rec.get("video") or rec.get("image")
            except (ValueError, AttributeError):
                media = None
            if isinstance(media, str) and (root / media).is_file():
                sample[Path(media).suffix.lstrip(".").lower()] = (root / media).read_bytes()
            writer.write(sample)
    finally:
        if writer is not None:
            writer.close()
    return paths


def convert(root: str | os.PathLike, fmt: str, *, shard_size: int = 8, progress: bool = False) -> dict:
    """Write the ``fmt`` layout (one of :data:`FORMATS`) of the synthetic dataset at ``root``."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    out: dict = {}
    if fmt in ("conversations", "wds"):
        out["annotations"] = str(write_conversations(root))
    if fmt == "wds":
        out["shards"] = [str(p) for p in write_shards(root, shard_size=shard_size, progress=progress)]
    return out
