"""Run the teacher and cache its outputs: content-addressed safetensors entries, one per (teacher, pixels, frames, options).

Layout: ``CACHE_DIR/<teacher digest>/teacher.json`` (the full ``teacher.cache_key()``) and
``CACHE_DIR/<teacher digest>/<xx>/<entry digest>.safetensors`` holding one sample's
:meth:`geovr.protocols.TeacherOutput.tensors` without the batch dimension, with metadata repeating the
full key. The key (:meth:`TeacherCache.entry_meta`) is everything that determines the teacher's output:

* ``pixels``: the sample's ``pixel_key`` (see :mod:`geovr.data.collate`: video identity, frame sampling and
  every pixel-changing dataset option), or, for data that does not declare one, ``sha256:`` of the frames
  tensor itself (exact, costs one hash of the decoded frames);
* ``frame_indices`` and ``frame_times``, the frame ``resolution`` the teacher receives, the feature
  ``layers``, the teacher's own key (weights, pre-processing, output options);
* the storage options: ``outputs`` (output groups held, :data:`OUTPUT_GROUPS`) and ``dtype``.

The sample id is *not* part of the key: questions on the same video and frames share one entry, and any
change of pixels (another trajectory, resize or video file) gives a new one. Entries are written
atomically (temporary file + ``os.replace``), so concurrent writers (several processes, several nodes on a
shared file system) and killed runs never leave a half-written entry under its final name.

Modes (trainer option ``cache``): ``"off"`` always runs the teacher; ``"auto"`` reads hits and runs
the teacher on a miss, storing the result; ``"only"`` reads hits and raises :class:`DataError` on a
miss, naming the sample, the cache directory and the fix (``geovr cache RECIPE``). An entry whose
metadata does not match its key is *stale*: ``"auto"`` recomputes it, ``"only"`` raises.

What is stored (trainer options ``cache_outputs``, ``cache_dtype``): the output groups listed, in that
dtype (floating tensors only), exactly as the teacher returns them — i.e. after the feature pooling and
half selection the objectives use (the teacher's ``pool`` / ``feature_half``). Outputs of groups not
cached are computed online: the teacher then runs on every batch and only the cached groups are read
from disk (this saves disk, not teacher time). A stored value is returned as float32; a miss returns the
same rounded value it stores, so results do not depend on whether an entry was a hit.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from geovr.errors import DataError
from geovr.protocols import Batch, TeacherOutput

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

FORMAT = "geovr-teacher-cache-2"

#: output groups (``trainer.cache_outputs``) → TeacherOutput fields they hold
OUTPUT_GROUPS = {
    "pose": ("pose_enc", "intrinsics", "extrinsics"),
    "depth": ("depth", "depth_conf", "points"),
    "scale": ("metric_depth", "metric_scale"),
    "features": ("features",),
}
#: ``trainer.cache_dtype`` values (fp8 ones only where the installed torch has the dtype)
CACHE_DTYPES = ("float32", "bfloat16", "float16", "float8_e4m3fn", "float8_e5m2")


def group_of(field: str) -> str:
    """Output group of a flat TeacherOutput key (``features.4`` → ``"features"``, ``pose_enc`` → ``"pose"``)."""
    name = field.split(".", 1)[0]
    for group, fields in OUTPUT_GROUPS.items():
        if name in fields:
            return group
    raise KeyError(f"teacher output {field!r} belongs to no cache output group {sorted(OUTPUT_GROUPS)}")


def cache_torch_dtype(name: str) -> torch.dtype:
    """``torch`` dtype of a ``cache_dtype`` name; :class:`DataError` when unknown or unsupported here."""
    if name not in CACHE_DTYPES or not isinstance(getattr(torch, name, None), torch.dtype):
        ok = [d for d in CACHE_DTYPES if isinstance(getattr(torch, d, None), torch.dtype)]
        raise DataError(
            f"trainer.cache_dtype = {name!r} is not supported by this torch ({torch.__version__}); choose one of {ok}"
        )
    return getattr(torch, name)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pixel_identity(batch: Batch, i: int = 0) -> str:
    """What determines sample ``i``'s frames: its ``pixel_key``, else ``sha256:`` of its (unpadded) frames."""
    if batch.pixel_keys:
        return str(batch.pixel_keys[i])
    one = batch.sample(i) if batch.batch_size > 1 or batch.ragged else batch
    frames = one.frames[0].detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(frames.shape)).encode())
    h.update(frames.numpy().tobytes())
    return "sha256:" + h.hexdigest()


class TeacherCache:
    """Content-addressed store of one teacher's outputs under ``root`` (see the module docstring).

    ``teacher_key``: ``teacher.cache_key()``; ``layers``: the feature layers requested; ``outputs``: cached
    output groups; ``dtype``: storage dtype name. All are part of every entry's key. Counters ``hits``,
    ``misses``, ``writes``, ``stale`` are kept for progress reports and tests; ``written`` lists the paths
    this instance wrote.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        teacher_key: str,
        layers=(),
        *,
        mode: str = "auto",
        outputs=tuple(OUTPUT_GROUPS),
        dtype: str = "float32",
    ):
        if mode not in ("auto", "off", "only"):
            raise ValueError(f"cache mode must be 'auto', 'off' or 'only', got {mode!r}")
        bad = [o for o in outputs if o not in OUTPUT_GROUPS]
        if bad:
            raise DataError(f"trainer.cache_outputs: unknown output group(s) {bad}; choose from {list(OUTPUT_GROUPS)}")
        self.root, self.teacher_key, self.layers, self.mode = Path(root), teacher_key, tuple(layers), mode
        self.outputs, self.dtype_name = tuple(sorted(set(outputs))), dtype
        self.dtype = cache_torch_dtype(dtype)
        self.dir = self.root / _digest(teacher_key)[:16]
        self.hits = self.misses = self.writes = self.stale = 0
        self.written: list[Path] = []

    def entry_meta(self, pixels: str, frame_indices, size, frame_times=None) -> dict[str, str]:
        """Metadata identifying one entry (everything its output depends on; see the module docstring)."""
        times = None if frame_times is None else [round(float(t), 6) for t in frame_times]
        return {
            "format": FORMAT,
            "teacher_key": self.teacher_key,
            "pixels": str(pixels),
            "frame_indices": json.dumps([int(i) for i in frame_indices]),
            "frame_times": json.dumps(times),
            "resolution": f"{int(size[0])}x{int(size[1])}",
            "layers": json.dumps(list(self.layers)),
            "outputs": json.dumps(list(self.outputs)),
            "dtype": self.dtype_name,
        }

    def meta_for(self, batch: Batch, i: int = 0) -> dict[str, str]:
        """:meth:`entry_meta` of sample ``i`` of ``batch`` (its valid frames and size)."""
        n = batch.frames_of(i)
        fidx = batch.frame_indices[i, :n].tolist() if batch.frame_indices is not None else list(range(n))
        times = batch.frame_times[i, :n].tolist() if batch.frame_times is not None else None
        return self.entry_meta(pixel_identity(batch, i), fidx, batch.size_of(i), times)

    def path_for(self, meta: dict[str, str]) -> Path:
        """File of the entry described by ``meta``."""
        key = _digest(json.dumps(meta, sort_keys=True))
        return self.dir / key[:2] / f"{key}.safetensors"

    def contains(self, meta: dict[str, str]) -> bool:
        """True when a readable entry with exactly this metadata exists (reads the header only)."""
        path = self.path_for(meta)
        if not path.is_file():
            return False
        try:
            with safe_open(str(path), "pt") as fh:
                return (fh.metadata() or {}) == meta
        except Exception:  # noqa: BLE001 (corrupt: not contained)
            return False

    def other_keys(self) -> list[str]:
        """Teacher keys of other teachers cached under the same root (a changed teacher's stale entries)."""
        out = []
        if self.root.is_dir():
            for d in sorted(self.root.iterdir()):
                f = d / "teacher.json"
                if d != self.dir and f.is_file():
                    try:
                        out.append(json.loads(f.read_text())["teacher_key"])
                    except (OSError, ValueError, KeyError):
                        continue
        return out

    def load(self, meta: dict[str, str], *, sample_id: str = "?") -> dict[str, torch.Tensor] | None:
        """The cached tensors of the entry ``meta``, or ``None`` on a miss (mode ``"only"`` raises instead,
        naming ``sample_id``)."""
        path = self.path_for(meta)
        if path.is_file():
            try:
                with safe_open(str(path), "pt") as fh:
                    found = fh.metadata() or {}
                    if found == meta:
                        self.hits += 1
                        return {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is no dict)
            except Exception:  # noqa: BLE001 (a corrupt or truncated file is treated as stale)
                found = {"error": "unreadable"}
            self.stale += 1
            if self.mode == "only":
                raise DataError(
                    f"teacher cache entry {path} is stale (written for {found}, expected {meta}); "
                    f'run `geovr cache RECIPE` to recompute it, or set trainer.cache = "auto"'
                )
            return None
        self.misses += 1
        if self.mode == "only":
            others = self.other_keys()
            hint = (
                f"; the cache holds outputs of {len(others)} other teacher key(s), i.e. the teacher's weights or "
                f"options changed since it was filled (stale)"
                if others
                else ""
            )
            raise DataError(
                f'teacher cache miss (trainer.cache = "only"): sample {sample_id!r}, pixels '
                f"{meta['pixels']}, frames {meta['frame_indices']}, resolution {meta['resolution']}, "
                f"layers {meta['layers']}, outputs {meta['outputs']} ({meta['dtype']}) not in {self.dir}"
                f"{hint}. The entry is keyed by the frames' pixels: a dataset option that changes them "
                f"(trajectory, resize, another video file) needs its own entries. Fill the cache with "
                f'`geovr cache RECIPE` (with the same overrides) or set trainer.cache = "auto"'
            )
        return None

    def cast(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The cached groups of ``tensors`` (a flat per-sample dict), floating ones in the storage dtype."""
        return {
            k: (v.detach().to(self.dtype) if v.is_floating_point() else v.detach())
            for k, v in tensors.items()
            if group_of(k) in self.outputs
        }

    def store(self, meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> Path:
        """Write one sample's tensors (already :meth:`cast`) atomically (temporary file + ``os.replace``)."""
        path = self.path_for(meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = self.dir / "teacher.json"
        if not info.is_file():
            _atomic_text(info, json.dumps({"teacher_key": self.teacher_key}, indent=2))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            save_file({k: v.to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.writes += 1
        self.written.append(path)
        return path


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _module_device(module, default):
    params = getattr(module, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device(default)


class TeacherSource:
    """Teacher outputs for a batch, through a :class:`TeacherCache` unless the mode is ``"off"``.

    ``encode(batch)`` returns a :class:`TeacherOutput` with every tensor on ``device`` as float32. On a
    fully cached batch whose teacher provides nothing outside the cached groups, the teacher is not run;
    otherwise it runs on the whole batch (so results equal the uncached run), the missing entries are
    stored and uncached groups come from this online run.
    """

    def __init__(self, teacher, *, layers=None, cache: TeacherCache | None = None, device="cpu"):
        self.teacher, self.layers, self.cache, self.device = teacher, layers, cache, torch.device(device)
        if hasattr(teacher, "eval"):
            teacher.eval()
        if hasattr(teacher, "requires_grad_"):
            teacher.requires_grad_(False)
        self.teacher_device = _module_device(teacher, device)

    @property
    def online_groups(self) -> set[str]:
        """Output groups the teacher provides that the cache does not hold (computed on every batch)."""
        if self.cache is None or self.cache.mode == "off":
            return set()
        provided = {group_of(f) for f in getattr(self.teacher, "provides", ())}
        return provided - set(self.cache.outputs)

    def _run(self, batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            out = self.teacher.encode(
                batch.frames.to(self.teacher_device), self.layers, batch=batch.to(self.teacher_device)
            )
        return out.tensors()

    def encode(self, batch: Batch) -> TeacherOutput:
        """``batch.frames`` ``[B,S,3,H,W]`` → TeacherOutput (``features`` ``[B,S,h,w,C]``, ``depth`` ``[B,S,H',W']`` …).
        A ragged batch is encoded sample by sample (:meth:`Batch.split`) into a ragged TeacherOutput."""
        if batch.ragged:
            return TeacherOutput.stack_samples([self.encode(one) for one in batch.split()])
        cache = self.cache if self.cache is not None and self.cache.mode != "off" else None
        if cache is None:
            flat = self._run(batch)
        else:
            metas = [cache.meta_for(batch, i) for i in range(batch.batch_size)]
            found = [cache.load(m, sample_id=sid) for m, sid in zip(metas, batch.sample_ids, strict=False)]
            hits = [f for f in found if f is not None]
            complete = len(hits) == len(found)
            online = self._run(batch) if (not complete or self.online_groups) else {}
            if complete:
                flat = {k: torch.stack([f[k] for f in hits]) for k in hits[0]}
            else:
                rows = [cache.cast({k: v[i] for k, v in online.items()}) for i in range(batch.batch_size)]
                for i, f in enumerate(found):
                    if f is None:
                        cache.store(metas[i], rows[i])
                flat = {k: torch.stack([r[k] for r in rows]) for k in rows[0]} if rows and rows[0] else {}
            flat.update({k: v for k, v in online.items() if group_of(k) not in cache.outputs})
        flat = {
            k: (v.to(self.device, torch.float32) if v.is_floating_point() else v.to(self.device))
            for k, v in flat.items()
        }
        return TeacherOutput.from_tensors(flat)

    def fill(self, samples: list[dict]) -> tuple[int, int]:
        """Store the entries of ``samples`` (sample dicts, :mod:`geovr.data.collate`) that are not in the
        cache yet, running the teacher only on those (``geovr cache``). Returns ``(written, present)``."""
        from geovr.data.collate import collate

        cache = self.cache
        if cache is None:
            raise ValueError("fill() needs a teacher cache (a source built with mode = 'auto' or 'only')")
        todo: list[tuple[dict, dict]] = []
        for s in samples:
            meta = cache.meta_for(collate([s]))
            if cache.contains(meta) or any(meta == m for _, m in todo):
                cache.hits += 1
            else:
                todo.append((s, meta))
        if todo:
            batch = collate([s for s, _ in todo])
            parts = batch.split() if batch.ragged else [batch]
            rows = []
            for part in parts:
                flat = self._run(part)
                rows += [{k: v[i] for k, v in flat.items()} for i in range(part.batch_size)]
            for (_, meta), row in zip(todo, rows, strict=False):
                cache.store(meta, cache.cast(row))
        return len(todo), len(samples) - len(todo)


def teacher_layers(teacher, objectives=(), configs=()) -> tuple[int, ...] | None:
    """Feature layers to request: the teacher's own ``layers`` plus every objective's ``teacher_layers``
    (read from the built objective or its recipe config). ``None`` when the teacher gives no features."""
    if "features" not in getattr(teacher, "provides", frozenset()):
        return None
    layers = {int(x) for x in (getattr(teacher, "layers", ()) or ())}
    for obj in (*objectives, *configs):
        extra = getattr(obj, "teacher_layers", None)
        if extra:
            layers |= {int(x) for x in extra}
    return tuple(sorted(layers))


def make_sources(
    context: BuildContext, *, mode: str, cache_dir: str, device, config=None
) -> tuple[TeacherSource | None, TeacherSource | None]:
    """Teacher and metric-teacher sources for ``context`` (``None`` where the recipe has none). ``config``
    (the trainer config) supplies ``cache_outputs`` / ``cache_dtype`` and, for ``mode = "auto"``, the
    ``cache_max_bytes`` limit checked here, before the first step (:class:`DataError` with the numbers)."""
    configs = [c.config for c in getattr(context.recipe, "objectives", []) or []] if context.recipe else []
    outputs = tuple(getattr(config, "cache_outputs", None) or OUTPUT_GROUPS)
    dtype = getattr(config, "cache_dtype", None) or "float32"
    limit = int(getattr(config, "cache_max_bytes", 0) or 0)
    if mode == "auto" and limit > 0:
        from geovr.train.estimate import check_cache_limit

        check_cache_limit(context, config)
    out: list[TeacherSource | None] = []
    for teacher in (context.teacher, context.metric_teacher):
        if teacher is None:
            out.append(None)
            continue
        layers = teacher_layers(teacher, context.objectives, configs)
        cache = None
        if mode != "off":
            cache = TeacherCache(cache_dir, teacher.cache_key(), layers or (), mode=mode, outputs=outputs, dtype=dtype)
            if mode == "auto" and not cache.dir.is_dir() and cache.other_keys():
                warnings.warn(
                    f"teacher cache {cache_dir}: no entries for the current teacher key; entries of "
                    f"{len(cache.other_keys())} other key(s) are stale and ignored",
                    stacklevel=2,
                )
        out.append(TeacherSource(teacher, layers=layers, cache=cache, device=device))
    return out[0], out[1]


def merge_metric(out: TeacherOutput, metric: TeacherOutput | None) -> TeacherOutput:
    """Put the metric teacher's ``metric_depth`` ``[B,S,H,W]`` into ``out``, bilinearly resized to
    ``out.depth``'s ``[H',W']`` when the teacher gives depth."""
    if metric is None or metric.metric_depth is None:
        return out
    md = metric.metric_depth
    if isinstance(md, list) or isinstance(out.depth, list):  # ragged batch: per sample [S_i,H,W]
        n = len(md) if isinstance(md, list) else int(md.shape[0])
        per = [
            merge_metric(
                out.sample(i), TeacherOutput(metric_depth=md[i][None] if isinstance(md, list) else md[i : i + 1])
            ).metric_depth[0]
            for i in range(n)
        ]
        out.metric_depth = per
        return out
    if out.depth is not None and tuple(md.shape[-2:]) != tuple(out.depth.shape[-2:]):
        B, S = md.shape[:2]
        md = torch.nn.functional.interpolate(
            md.reshape(B * S, 1, *md.shape[-2:]), size=out.depth.shape[-2:], mode="bilinear", align_corners=False
        ).reshape(B, S, *out.depth.shape[-2:])
    out.metric_depth = md
    return out


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process as set by ``torchrun`` / ``accelerate launch`` (``RANK``,
    ``WORLD_SIZE``; global over nodes), ``(0, 1)`` otherwise."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1
    return (rank, world) if 0 <= rank < world else (0, 1)


def unique_groups(dataset) -> list[tuple[str, int]]:
    """``(pixel key, first index)`` of each distinct entry group of ``dataset``, sorted by key: datasets with a
    ``pixel_key(index)`` method are grouped without loading samples; others give one group per index."""
    keyfn = getattr(dataset, "pixel_key", None)
    first: dict[str, int] = {}
    for i in range(len(dataset)):
        key = str(keyfn(i)) if callable(keyfn) else f"index:{i:012d}"
        first.setdefault(key, i)
    return sorted(first.items())


def precompute(
    context: BuildContext, *, progress: bool = True, split: str = "train", config=None, rank=None, world=None
) -> dict:
    """Fill the teacher cache for the ``split`` dataset of ``context`` (the ``geovr cache`` verb).

    ``config`` is the trainer's :class:`~geovr.train.configs.AccelerateTrainerConfig` (default: the
    recipe's, else defaults): ``batch_size`` samples per teacher call, ``cache_dir``, ``cache_outputs``,
    ``cache_dtype``. Parallel fill: the distinct entry groups (:func:`unique_groups`) are split across
    processes, rank ``r`` of ``w`` taking groups ``r, r+w, …`` (``rank``/``world`` default to
    :func:`distributed_rank`: ``torchrun`` / ``accelerate launch`` on any number of nodes, no process group
    needed); entries already present are skipped, so an interrupted fill is restarted by running it again.
    Returns counts ``{"samples", "groups", "hits", "written", "stale", "cache_dir", "rank", "world",
    "paths"}`` summed over the teacher and metric teacher (``paths``: the files this process wrote).
    """
    from tqdm.auto import tqdm

    from geovr.train.configs import AccelerateTrainerConfig

    if config is None:
        trainer = getattr(context.recipe, "trainer", None) if context.recipe is not None else None
        config = (
            trainer.config
            if trainer is not None and isinstance(trainer.config, AccelerateTrainerConfig)
            else AccelerateTrainerConfig()
        )
    if context.teacher is None and context.metric_teacher is None:
        raise DataError("nothing to cache: the recipe has no [teacher] or [metric_teacher]")
    dataset = context.datasets.get(split)
    if dataset is None:
        raise DataError(f"nothing to cache: the recipe has no [data.{split}] table")
    if rank is None or world is None:
        rank, world = distributed_rank()
    sources = [
        s
        for s in make_sources(
            context,
            mode="auto",
            cache_dir=config.resolved_cache_dir(),
            device=context.device,
            config=attrs_evolve_no_limit(config),
        )
        if s is not None
    ]
    groups = unique_groups(dataset)
    mine = [index for _, index in groups[rank::world]]
    bs = max(1, int(config.batch_size))
    bar = tqdm(
        total=len(mine),
        desc=f"geovr cache [{rank}/{world}]" if world > 1 else "geovr cache",
        unit="entry",
        disable=not progress,
    )
    for start in range(0, len(mine), bs):
        samples = [dataset[i] for i in mine[start : start + bs]]
        for src in sources:
            src.fill(samples)
        bar.update(len(samples))
    bar.close()
    caches = [s.cache for s in sources if s.cache is not None]
    return {
        "samples": len(mine),
        "groups": len(groups),
        "hits": sum(c.hits for c in caches),
        "written": sum(c.writes for c in caches),
        "stale": sum(c.stale for c in caches),
        "cache_dir": str(config.resolved_cache_dir()),
        "rank": rank,
        "world": world,
        "paths": [str(p) for c in caches for p in c.written],
    }


def attrs_evolve_no_limit(config):
    """``config`` without ``cache_max_bytes`` (filling the cache is how a user accepts its size)."""
    import attrs

    return attrs.evolve(config, cache_max_bytes=0) if hasattr(config, "cache_max_bytes") else config
