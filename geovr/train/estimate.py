"""Teacher-cache size and fill-time estimates without running (or loading) a teacher.

:func:`estimate_cache` reads a validated recipe: the teacher and metric teacher components and options, the
feature layers the objectives ask for, the training data (frames per sample, frame size) and the cache
options (``cache_outputs``, ``cache_dtype``). Entries = distinct ``pixel_key`` values of the training data
(questions on the same video and frames share one entry; :func:`geovr.train.teacher_cache.unique_groups`), or
``entries=`` when the data is not on this machine. Bytes per entry come from the teacher's output shapes
(each teacher config's ``cache_layout()``, the sizing interface of :mod:`geovr.sizing`) times the storage
dtype, plus the safetensors header. Teacher time is the FLOP count the teacher reports for its forward
(for the transformer teachers: patch embedding + blocks + attention; the dense heads are not counted)
divided by an assumed sustained throughput (``tflops``, TFLOP/s per GPU).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from geovr.errors import DataError
from geovr.sizing import layout_of

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1}
#: frame size assumed when the training videos cannot be probed (ScanNet-like 4:3 video)
DEFAULT_FRAME_SIZE = (480, 640)


def _feature_layers(recipe, choice=None) -> list[int]:
    """Feature layers the cache stores for ``choice`` (default: the teacher), as
    :func:`geovr.train.teacher_cache.teacher_layers` requests them: the config's own ``layers`` plus every
    objective's ``teacher_layers``; none when the teacher gives no features (its ``provides()``)."""
    choice = recipe.teacher if choice is None else choice
    provides = choice.config.provides() if callable(getattr(choice.config, "provides", None)) else {"features"}
    if "features" not in provides:
        return []
    layers = set(getattr(choice.config, "layers", []) or [])
    for obj in recipe.objectives:
        layers |= set(getattr(obj.config, "teacher_layers", None) or [])
    return sorted(int(x) for x in layers)


def frame_shape(recipe, datasets=None) -> tuple[int, int, int, str]:
    """``(S, H, W, source)`` of the training samples: ``S`` = the data's ``num_frames``, else its
    ``max_frames`` (data sampled at a frame rate: the largest sample, what memory must hold), else 8;
    ``H, W`` from the data options, else the first video's header, else :data:`DEFAULT_FRAME_SIZE` (said
    in ``source``)."""
    data = recipe.data.get("train")
    cfg = data.config if data is not None else None
    S = int(getattr(cfg, "num_frames", None) or getattr(cfg, "max_frames", None) or 8)  # rate-sampled data: its maximum
    size = getattr(cfg, "image_size", None)
    if size:
        return S, int(size[0]), int(size[1]), "data.train.image_size"
    ds = (datasets or {}).get("train")
    if ds is not None and hasattr(ds, "video_path") and len(ds):
        try:
            import av

            with av.open(str(ds.video_path(ds.records[0]))) as c:
                st = c.streams.video[0]
                return S, int(st.height), int(st.width), "first training video's header"
        except Exception:  # noqa: BLE001 (any unreadable video: fall back to the stated assumption)
            pass
    return (
        S,
        DEFAULT_FRAME_SIZE[0],
        DEFAULT_FRAME_SIZE[1],
        f"assumed {DEFAULT_FRAME_SIZE[0]}x{DEFAULT_FRAME_SIZE[1]} frames",
    )


def _header_bytes(names, pixel_key: str) -> int:
    meta = {
        "format": "geovr-teacher-cache-2",
        "teacher_key": "0" * 64,
        "pixels": pixel_key,
        "frame_indices": "[" + ", ".join(["000"] * 32) + "]",
        "frame_times": "[" + ", ".join(["00.000"] * 32) + "]",
        "resolution": "0000x0000",
        "layers": "[0, 0, 0, 0]",
        "outputs": '["x", "x", "x", "x"]',
        "dtype": "float32",
    }
    per_tensor = 70
    return 8 + len(json.dumps({"__metadata__": meta})) + sum(per_tensor + len(n) for n in names)


def estimate_cache(recipe, *, datasets=None, entries: int | None = None, config=None, tflops: float = 100.0) -> dict:
    """Projected teacher-cache size and fill time of ``recipe`` (see the module docstring).

    ``datasets``: built datasets (``{"train": ...}``) to count distinct entries; ``entries`` overrides the
    count. ``config``: trainer config (default: the recipe's). Returns a JSON-able dict with ``entries``,
    ``bytes_per_entry``, ``bytes_by_output`` ``{teacher: {group: bytes}}``, ``total_bytes``,
    ``teacher_flops_per_entry``, ``teacher_seconds`` (at ``tflops``), ``frames``, ``notes``.
    """
    from geovr.train.teacher_cache import group_of, unique_groups

    config = config if config is not None else (recipe.trainer.config if recipe.trainer is not None else None)
    outputs = set(getattr(config, "cache_outputs", None) or ("pose", "depth", "scale", "features"))
    dtype = getattr(config, "cache_dtype", "float32") or "float32"
    S, H, W, source = frame_shape(recipe, datasets)
    notes = [f"{S} frames of {H}x{W} per sample ({source})"]
    ds = (datasets or {}).get("train")
    pixel_key = "x" * 200
    if entries is None:
        if ds is None:
            raise DataError(
                "cannot count cache entries: the training data is not available here; pass the number "
                "of distinct videos x frame choices (`geovr cache RECIPE --estimate --entries N`)"
            )
        groups = unique_groups(ds)
        entries = len(groups)
        notes.append(
            f"{entries} distinct entries among {len(ds)} samples"
            + ("" if callable(getattr(ds, "pixel_key", None)) else " (no pixel_key: one per sample)")
        )
        if groups and callable(getattr(ds, "pixel_key", None)):
            pixel_key = groups[0][0]
    else:
        notes.append(f"{entries} entries (given)")
    per_teacher, flops = {}, 0.0
    for role, choice in (("teacher", recipe.teacher), ("metric_teacher", recipe.metric_teacher)):
        if choice is None:
            continue
        layers = _feature_layers(recipe, choice)
        layout = layout_of(choice.config, choice.component, S, H, W, layers, where=role)
        f, note = layout.flops, layout.note
        kept = {k: tuple(v) for k, v in layout.shapes.items() if group_of(k) in outputs}
        by_group: dict[str, int] = {}
        for k, shape in kept.items():
            by_group[group_of(k)] = by_group.get(group_of(k), 0) + math.prod(shape) * ITEMSIZE[dtype]
        if kept:
            by_group["header"] = _header_bytes(kept, pixel_key)
        per_teacher[role] = by_group
        flops += f
        notes.append(f"{role} {choice.component}: {note}")
    per_entry = sum(sum(g.values()) for g in per_teacher.values())
    seconds = flops * entries / (tflops * 1e12)
    return {
        "entries": int(entries),
        "bytes_per_entry": int(per_entry),
        "bytes_by_output": per_teacher,
        "total_bytes": int(per_entry * entries),
        "cache_outputs": sorted(outputs),
        "cache_dtype": dtype,
        "teacher_flops_per_entry": flops,
        "teacher_tflops_assumed": tflops,
        "teacher_seconds": seconds,
        "frames": [S, H, W],
        "notes": notes,
    }


def human_bytes(n: float) -> str:
    """``1.5 GB`` style (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n} B"


def shrink_options(est: dict) -> list[str]:
    """Options that shrink a cache, with what each would save (for the ``cache_max_bytes`` error)."""
    out = []
    dtype = est["cache_dtype"]
    if ITEMSIZE[dtype] > 2:
        out.append('trainer.cache_dtype = "bfloat16" (halves the tensors)')
    if ITEMSIZE[dtype] > 1:
        out.append('trainer.cache_dtype = "float8_e4m3fn" (1 byte per value, where torch supports it)')
    groups: dict[str, int] = {}
    for by in est["bytes_by_output"].values():
        for g, b in by.items():
            if g != "header":
                groups[g] = groups.get(g, 0) + b
    for g, b in sorted(groups.items(), key=lambda kv: -kv[1]):
        out.append(f"drop {g!r} from trainer.cache_outputs (saves {human_bytes(b * est['entries'])}; computed online)")
    out.append("fewer frames (data.train.num_frames) or a smaller teacher image_size / pool = 2")
    out.append('trainer.cache = "off" (no cache) or a larger trainer.cache_max_bytes')
    return out


def format_estimate(est: dict) -> str:
    """Human-readable report of :func:`estimate_cache`."""
    lines = [f"entries          : {est['entries']}"]
    for role, by in est["bytes_by_output"].items():
        parts = ", ".join(f"{g} {human_bytes(b)}" for g, b in by.items())
        lines.append(f"bytes/entry {role:<15}: {parts}")
    lines.append(
        f"bytes per entry  : {human_bytes(est['bytes_per_entry'])} ({est['cache_dtype']}, outputs "
        f"{', '.join(est['cache_outputs'])})"
    )
    lines.append(f"total            : {human_bytes(est['total_bytes'])}")
    hours = est["teacher_seconds"] / 3600
    lines.append(
        f"teacher time     : {est['teacher_flops_per_entry'] / 1e12:.2f} TFLOP per entry, about "
        f"{hours:.2f} GPU-hours at {est['teacher_tflops_assumed']:g} TFLOP/s sustained (forward, heads not counted)"
    )
    lines += [f"note             : {n}" for n in est["notes"]]
    return "\n".join(lines)


def check_cache_limit(context: BuildContext, config) -> dict | None:
    """Raise :class:`DataError` when the projected cache of ``context`` exceeds ``config.cache_max_bytes``
    (numbers and the options that shrink it in the message); returns the estimate otherwise."""
    limit = int(getattr(config, "cache_max_bytes", 0) or 0)
    if limit <= 0:
        return None
    if context.recipe is None:
        raise DataError("trainer.cache_max_bytes needs a recipe to project the cache size (no recipe in this run)")
    est = estimate_cache(context.recipe, datasets=context.datasets, config=config)
    if est["total_bytes"] > limit:
        tips = "\n  - ".join(shrink_options(est))
        raise DataError(
            f"teacher cache would hold {est['entries']} entries x {human_bytes(est['bytes_per_entry'])} = "
            f"{human_bytes(est['total_bytes'])} ({est['total_bytes']} bytes), more than "
            f"trainer.cache_max_bytes = {limit} ({human_bytes(limit)}); the run stops before training. "
            f"Options that shrink it:\n  - {tips}"
        )
    return est
