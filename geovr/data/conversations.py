"""The ``video_conversations`` dataset: LLaVA-style conversations over videos (VSI-590K, VLM-3R).

Record format (one JSON object per JSONL line, or the items of a JSON array, or ``<key>.json`` in a tar
shard next to ``<key>.mp4``)::

    {"id": "...", "video": "arkitscenes/41069025.mp4",          # or "image": "scannet/0001.jpg"
     "conversations": [{"from": "human", "value": "<image>\\nThese are frames of a video.\\nHow many ..."},
                       {"from": "gpt", "value": "3"}, ...more human/gpt pairs...]}

VLM-3R's records name no file but ``"data_source"`` and ``"scene_name"``: their video is
``<data_source>/<scene_name>.mp4`` (a source's ``data_source_dirs`` renames folders, e.g. ``scannetpp`` →
``scannetppv2`` as the released loader does).

Turns alternate ``human``/``gpt`` (``user``/``assistant`` accepted), start with a human turn and end with
an assistant turn. Prompts are cleaned as the released loader does: the ``<image>``/``<video>``
placeholders and the ``These are frames of a video.`` preamble are removed from human turns (the video
is placed by the backbone's chat template). Video paths are relative to the source's ``video_root`` (or
the ``.mp4``/``.jpg`` member of the shard sample). Frames: ``fps`` per second of video, clamped to
``[min_frames, max_frames]``, read by seeking (:func:`geovr.data.seek.read_video_rate`); image records
become one-frame samples (or are left out with ``video_only``).

A sample (see :mod:`geovr.data.collate`) has today's keys — ``question`` = first human turn, ``answer`` =
first assistant turn — plus ``conversations`` (``[{"role": "user" | "assistant", "text": str}, ...]``,
which backbones render as a multi-turn chat with labels on every assistant turn), ``frame_times`` ``[S]``,
``source`` (the source's name) and ``skipped`` (records this sample stands in for, see below).

Mixtures: sample ``k`` of an epoch maps to a source (sources are laid end to end, source ``i`` taking
``round(weight_i · n_i)`` slots) and a record of it (in order when the weight is 1, else from a
permutation seeded by ``(seed, i, epoch)``); the trainer's seeded shuffle interleaves them. Bad records:
each record's field types are checked (``file:line`` / ``shard:key`` in every message). With
``on_error = "skip"`` a bad record is replaced by the next good one of its source and reported in the
sample's ``skipped`` list (``{"source", "reason", "where", "problem"}``) so that the trainer counts it;
the data order stays a pure function of the seed and the position, so resumed runs stay exact.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from geovr.data.configs import ConversationSource, VideoConversationsConfig
from geovr.errors import DataError

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

HUMAN = ("human", "user")
ASSISTANT = ("gpt", "assistant")
PLACEHOLDERS = ("<image>\n", "<video>\n", "<image>", "<video>")
PREAMBLE = "These are frames of a video."
MAX_TRIES = 16
REASONS = ("invalid_json", "bad_record", "missing_media", "decode_error")


class RecordError(DataError):
    """A bad record: ``reason`` is one of :data:`REASONS`, ``where`` its ``file:line`` / ``shard:key``."""

    def __init__(self, where: str, reason: str = "bad_record", problem: str | None = None):
        # one-argument form: the full message (how data-loader workers re-create the exception)
        super().__init__(where if problem is None else f"{where}: {problem}")
        self.where, self.reason, self.problem = where, reason, problem if problem is not None else where


def clean_prompt(text: str) -> str:
    """A human turn without media placeholders and the video preamble (as the released loader)."""
    for token in PLACEHOLDERS:
        text = text.replace(token, "")
    text = text.replace(PREAMBLE + "\n", "").replace(PREAMBLE, "")
    return text.strip()


def _kind(value) -> str:
    return {
        type(None): "null",
        list: "a list",
        dict: "an object",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def media_of(rec: dict, dirs: dict | None = None) -> tuple[str, str]:
    """``("video" | "image", path relative to the video root)`` of a valid record."""
    if "video" in rec:
        return "video", rec["video"]
    if "image" in rec:
        return "image", rec["image"]
    source = str(rec["data_source"])
    return "video", f"{(dirs or {}).get(source, source)}/{rec['scene_name']}.mp4"


def record_problem(rec) -> str | None:
    """What is wrong with a conversation record's structure or field types (``None`` when it is valid)."""
    if not isinstance(rec, dict):
        return f"a record must be a JSON object, got {_kind(rec)}"
    return _fields_problem(rec) or _turns_problem(rec.get("conversations"))


def _fields_problem(rec: dict) -> str | None:
    """The media / scene / id fields of a record."""
    for key in ("video", "image"):
        if key in rec and not isinstance(rec[key], str):
            return f"{key!r} must be a string (a path), got {_kind(rec[key])}"
    for key in ("scene_name", "data_source"):
        if key in rec and not isinstance(rec[key], str):
            return f"{key!r} must be a string, got {_kind(rec[key])}"
    if "video" not in rec and "image" not in rec and not ("scene_name" in rec and "data_source" in rec):
        return "record has neither 'video' nor 'image' (nor 'data_source' + 'scene_name')"
    if "id" in rec and not isinstance(rec["id"], (str, int)):
        return f"'id' must be a string or a number, got {_kind(rec['id'])}"
    if "question_type" in rec and not isinstance(rec["question_type"], str):
        return f"'question_type' must be a string, got {_kind(rec['question_type'])}"
    return None


def _turns_problem(turns) -> str | None:
    """The ``conversations`` list: alternating human / gpt turns with string values, ending with an answer."""
    if not isinstance(turns, list):
        return f"'conversations' must be a list of turns, got {_kind(turns)}"
    if len(turns) < 2:
        return f"'conversations' needs at least one human and one gpt turn, got {len(turns)} turn(s)"
    for n, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return f"conversations[{n}] must be an object with 'from' and 'value', got {_kind(turn)}"
        who, value = turn.get("from"), turn.get("value")
        expected = HUMAN if n % 2 == 0 else ASSISTANT
        if who not in expected:
            return (
                f"conversations[{n}].from must be {' or '.join(map(repr, expected))} (turns alternate, human "
                f"first), got {who!r}"
            )
        if not isinstance(value, str):
            return f"conversations[{n}].value must be a string, got {_kind(value)}"
    if len(turns) % 2:
        return "the conversation ends with a human turn (no answer to train on)"
    return None


def turns_of(rec: dict) -> list[dict]:
    """``[{"role": "user" | "assistant", "text"}, ...]`` of a valid record, human turns cleaned."""
    return [
        {"role": "user", "text": clean_prompt(t["value"])}
        if t["from"] in HUMAN
        else {"role": "assistant", "text": t["value"]}
        for t in rec["conversations"]
    ]


def iter_json_records(path: str | Path):
    """Yield ``(where, record_or_None, problem_or_None)`` for each record of a JSONL file or a JSON array,
    ``where`` = ``file:line``. A line that is not JSON gives ``(where, None, "invalid JSON: ...")``; a
    JSON array that breaks off raises :class:`DataError` (its remaining records cannot be found)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"annotation file not found: {p}")
    text = p.read_text(encoding="utf-8")
    start = len(text) - len(text.lstrip())
    if text[start : start + 1] != "[":
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield f"{p}:{lineno}", json.loads(line), None
                except json.JSONDecodeError as exc:
                    yield f"{p}:{lineno}", None, f"invalid JSON: {exc.msg} (column {exc.colno})"
        return
    decoder = json.JSONDecoder()
    pos, at = start + 1, 1 + text.count("\n", 0, start + 1)
    while True:
        nxt = len(text) - len(text[pos:].lstrip())
        at += text.count("\n", pos, nxt)
        pos = nxt
        if text[pos : pos + 1] == "]":
            return
        try:
            rec, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}:{exc.lineno}: invalid JSON array: {exc.msg}") from exc
        yield f"{p}:{at}", rec, None
        at += text.count("\n", pos, end)
        pos = end
        nxt = len(text) - len(text[pos:].lstrip())
        at += text.count("\n", pos, nxt)
        pos = nxt
        if text[pos : pos + 1] == ",":
            pos += 1
        elif text[pos : pos + 1] != "]":
            raise DataError(f"{p}:{at}: invalid JSON array: expected ',' or ']' after a record")


class Source:
    """The records of one :class:`ConversationSource`: ``entries`` are ``(where, record)`` pairs (JSON
    files, validated on load) or :class:`geovr.data.shards.ShardSample` (validated when read);
    ``load_skips`` counts records left out on load by reason, ``images`` image records left out."""

    def __init__(self, spec: ConversationSource, *, video_only: bool, on_error: str):
        self.spec, self.name, self.weight = spec, spec.name, float(spec.weight)
        self.video_only = spec.video_only if spec.video_only is not None else video_only
        self.on_error = on_error
        self.video_root = Path(spec.video_root) if spec.video_root else None
        self.load_skips: Counter = Counter()
        self.examples: list[str] = []
        self.images = 0
        self.entries: list = []
        if spec.shards is not None:
            self._index_shards()
        else:
            self._load_json()
        if spec.limit:
            self.entries = self.entries[: spec.limit]

    def _bad(self, where: str, reason: str, problem: str) -> None:
        if self.on_error == "raise":
            raise RecordError(where, reason, problem)
        self.load_skips[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {problem}")

    def _load_json(self) -> None:
        annotations = self.spec.annotations
        assert annotations is not None  # a source has annotations or shards (ConversationSource.check)
        files = [annotations] if isinstance(annotations, str) else list(annotations)
        for f in files:
            for where, rec, problem in iter_json_records(f):
                problem = problem or record_problem(rec)
                if problem:
                    self._bad(where, "invalid_json" if rec is None else "bad_record", problem)
                elif media_of(rec)[0] == "image" and self.video_only:
                    self.images += 1
                else:
                    self.entries.append((where, rec))

    def _index_shards(self) -> None:
        from geovr.data.shards import IMAGE_EXTS, expand_shards, index_shard

        assert self.spec.shards is not None
        for shard in expand_shards(self.spec.shards):
            for sample in index_shard(shard):
                if "json" not in sample.members:
                    self._bad(sample.where, "bad_record", f"no .json member (has {sorted(sample.members)})")
                elif sample.media_ext() is None:
                    self._bad(sample.where, "missing_media", f"no video or image member (has {sorted(sample.members)})")
                elif sample.media_ext() in IMAGE_EXTS and self.video_only:
                    self.images += 1
                else:
                    self.entries.append(sample)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def total_records(self) -> int:
        """Records seen on load, bad ones included (image records left out by ``video_only`` excluded)."""
        return len(self.entries) + sum(self.load_skips.values())

    def record(self, j: int) -> tuple[str, dict, object]:
        """``(where, record, media)`` of entry ``j``: ``media`` a path (JSON sources) or ``(ext, bytes)``."""
        entry = self.entries[j]
        if isinstance(entry, tuple):
            where, rec = entry
            assert self.video_root is not None  # annotations need a video_root (ConversationSource.check)
            path = self.video_root / media_of(rec, self.spec.data_source_dirs)[1]
            if not path.is_file():
                raise RecordError(where, "missing_media", f"media file not found: {path}")
            return where, rec, path
        from geovr.data.shards import read_member

        where = entry.where
        try:
            rec = json.loads(read_member(entry, "json"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(where, "invalid_json", f"invalid JSON in .json: {exc}") from exc
        problem = record_problem(rec)
        if problem:
            raise RecordError(where, "bad_record", problem)
        ext = entry.media_ext()
        return where, rec, (ext, read_member(entry, ext))


def media_identity(src: Source, j: int) -> dict:
    """Identity of entry ``j``'s media without reading it: the resolved file with its size and modification
    time (JSON sources), or the shard file (size, modification time) with the member's key, offset and
    size (shards). A missing media file raises :class:`RecordError` as :meth:`Source.record` does."""
    entry = src.entries[j]
    if isinstance(entry, tuple):
        where, rec = entry
        kind, name = media_of(rec, src.spec.data_source_dirs)
        assert src.video_root is not None  # annotations need a video_root (ConversationSource.check)
        path = (src.video_root / name).resolve()
        if not path.is_file():
            raise RecordError(where, "missing_media", f"media file not found: {path}")
        st = path.stat()
        return {"kind": kind, "media": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    from geovr.data.shards import VIDEO_EXTS

    ext = entry.media_ext()
    shard = Path(entry.shard).resolve()
    st = shard.stat()
    offset, size = entry.members.get(ext, (None, None)) if ext else (None, None)
    return {
        "kind": "video" if ext in VIDEO_EXTS else "image",
        "shard": str(shard),
        "shard_bytes": st.st_size,
        "shard_mtime_ns": st.st_mtime_ns,
        "member": f"{entry.key}.{ext}",
        "offset": offset,
        "bytes": size,
    }


def _load_image(media, where: str):
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        src = io.BytesIO(media[1]) if isinstance(media, tuple) else media
        with Image.open(src) as img:
            arr = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise RecordError(where, "decode_error", f"cannot decode image: {exc}") from exc
    frames = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float().div_(255.0)
    return frames, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.float32)


class VideoConversationsDataset:
    """Map-style dataset of conversation samples over one or several sources (module docstring).

    ``len`` = Σ_i round(weight_i · n_i); :meth:`set_epoch` changes which records weights ≠ 1 draw.
    ``strict`` (evaluation data) raises on every bad record whatever ``on_error`` says.
    """

    def __init__(self, config: VideoConversationsConfig, *, seed: int = 0, strict: bool = False):
        self.config = config
        self.on_error = "raise" if strict else config.on_error
        self.seed, self.epoch = int(seed), 0
        self.sources = [Source(s, video_only=config.video_only, on_error=self.on_error) for s in config.source_list()]
        empty = [s.name for s in self.sources if not len(s)]
        if empty:
            raise DataError(
                f"video_conversations: source(s) {empty} hold no usable record"
                + "".join(
                    f"; {s.name}: {dict(s.load_skips)}, e.g. {s.examples[:2]}"
                    for s in self.sources
                    if s.name in empty and s.load_skips
                )
            )
        self.counts = [max(1, round(s.weight * len(s))) for s in self.sources]
        self.offsets = np.cumsum([0, *self.counts])
        self._orders: dict = {}
        total = sum(s.total_records for s in self.sources)
        bad = sum(sum(s.load_skips.values()) for s in self.sources)
        if bad > self.skip_budget():
            examples = [e for s in self.sources for e in s.examples][:5]
            raise DataError(
                f"video_conversations: {bad} of {total} records are bad (max_skip_fraction = "
                f"{config.max_skip_fraction}): {self.load_skip_counts()}; e.g.\n  " + "\n  ".join(examples)
            )

    # -- bookkeeping read by the trainer ------------------------------------------------------------
    reasons = REASONS

    @property
    def max_skip_fraction(self) -> float:
        return float(self.config.max_skip_fraction)

    def skip_budget(self) -> int:
        """How many bad records a run may meet in all (load + read time) before it stops."""
        return int(self.config.max_skip_fraction * sum(s.total_records for s in self.sources))

    def load_skip_counts(self) -> dict[str, int]:
        """``{"<source>/<reason>": n}`` of records left out on load."""
        return {f"{s.name}/{r}": n for s in self.sources for r, n in sorted(s.load_skips.items())}

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s draw of records for sources with weight ≠ 1 (called by the trainer)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """``(source, entry)`` of sample ``index`` in the current epoch."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        i = int(np.searchsorted(self.offsets, index, side="right") - 1)
        t = index - int(self.offsets[i])
        n = len(self.sources[i])
        if self.counts[i] == n:
            return i, t
        key = (i, self.epoch)
        if key not in self._orders:
            self._orders = {key: np.random.default_rng([self.seed, i, self.epoch]).permutation(n)}
        return i, int(self._orders[key][t % n])

    # -- samples -------------------------------------------------------------------------------------
    def pixel_key(self, index: int) -> str:
        """Identity of sample ``index``'s frames without decoding (``pixel_key`` in :mod:`geovr.data.collate`):
        the media (:func:`media_identity`) and every option that changes which frames are read and how
        (``fps``, ``min_frames``, ``max_frames``, ``seek``, ``image_size``). Questions on the same video share it."""
        return self._pixel_key(*self.locate(index))

    def _pixel_key(self, i: int, j: int) -> str:
        cfg = self.config
        ident = media_identity(self.sources[i], j)
        if ident["kind"] == "video":
            ident.update(fps=cfg.fps, min_frames=cfg.min_frames, max_frames=cfg.max_frames, seek=cfg.seek)
        ident["image_size"] = None if cfg.image_size is None else list(cfg.image_size)
        return "video_conversations:" + json.dumps(ident, sort_keys=True, separators=(",", ":"))

    def __getitem__(self, index: int) -> dict:
        i, j = self.locate(index)
        src = self.sources[i]
        skipped = []
        for attempt in range(min(MAX_TRIES, len(src))):
            try:
                sample = self.load(i, (j + attempt) % len(src))
            except RecordError as exc:
                if self.on_error == "raise":
                    raise
                skipped.append({"source": src.name, "reason": exc.reason, "where": exc.where, "problem": exc.problem})
                continue
            sample["skipped"] = skipped
            return sample
        raise DataError(
            f"video_conversations: {len(skipped)} consecutive bad records in source {src.name!r} from "
            f"{skipped[0]['where']}: " + "; ".join(f"{s['where']}: {s['problem']}" for s in skipped[:3])
        )

    def load(self, i: int, j: int) -> dict:
        """Sample of entry ``j`` of source ``i``; a bad record raises :class:`RecordError`."""
        from geovr.data.seek import read_video_rate
        from geovr.data.video_qa import resize_sample

        src, cfg = self.sources[i], self.config
        where, rec, media = src.record(j)
        kind, media_name = media_of(rec, src.spec.data_source_dirs)
        is_video = kind == "video"
        if is_video and isinstance(media, tuple) and media[0] not in ("mp4", "mkv", "webm", "avi", "mov"):
            raise RecordError(where, "missing_media", f"record names a video but the shard sample holds .{media[0]}")
        if not is_video:
            frames, idx, times = _load_image(media, where)
        else:
            try:
                frames, idx, times = read_video_rate(
                    io.BytesIO(media[1]) if isinstance(media, tuple) else media,
                    fps=cfg.fps,
                    min_frames=cfg.min_frames,
                    max_frames=cfg.max_frames,
                    seek=cfg.seek,
                    where=where,
                )
            except RecordError:
                raise
            except DataError as exc:
                raise RecordError(where, "decode_error", str(exc).removeprefix(f"{where}: ")) from exc
        if cfg.image_size is not None:
            frames, _, _ = resize_sample(frames, tuple(cfg.image_size))
        turns = turns_of(rec)
        rid = rec.get("id", where.rsplit(":", 1)[-1])
        return {
            "frames": frames,
            "frame_indices": idx,
            "frame_times": times,
            "question": turns[0]["text"],
            "options": None,
            "answer": turns[1]["text"],
            "question_type": rec.get("question_type", "conversation"),
            "scene_id": Path(str(media_name)).stem,
            "sample_id": f"{src.name}:{rid}",
            "conversations": turns,
            "source": src.name,
            "pixel_key": self._pixel_key(i, j),
        }


def _is_eval_config(config, context: BuildContext | None) -> bool:
    recipe = getattr(context, "recipe", None)
    data = getattr(recipe, "data", None) or {}
    choice = data.get("eval") if isinstance(data, dict) else None
    return choice is not None and getattr(choice, "config", None) is config


def build(config: VideoConversationsConfig, context: BuildContext | None = None) -> VideoConversationsDataset:
    """Factory of the ``video_conversations`` dataset component (evaluation data is read strictly)."""
    if isinstance(config, dict):
        config = VideoConversationsConfig(**config)
    return VideoConversationsDataset(
        config, seed=getattr(context, "seed", 0) or 0, strict=_is_eval_config(config, context)
    )
