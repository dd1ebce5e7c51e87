"""Teacher-output cache: one safetensors file per (teacher, sample, frames, resolution, layers).

Layout: ``CACHE_DIR/<teacher digest>/teacher.json`` (the full ``teacher.cache_key()``) and
``CACHE_DIR/<teacher digest>/<xx>/<entry digest>.safetensors`` holding one sample's
:meth:`geovr.protocols.TeacherOutput.tensors` without the batch dimension, with metadata repeating the
full key. Entries are written atomically (temporary file + ``os.replace``), so concurrent writers
(several processes) and killed runs never leave a half-written entry under its final name.

Modes (trainer option ``cache``): ``"off"`` always runs the teacher; ``"auto"`` reads hits and runs
the teacher on a miss, storing the result; ``"only"`` reads hits and raises :class:`DataError` on a
miss, naming the sample, the cache directory and the fix (``geovr cache RECIPE``). An entry whose
metadata does not match its key is *stale*: ``"auto"`` recomputes it, ``"only"`` raises.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from geovr.errors import DataError
from geovr.protocols import Batch, TeacherOutput

FORMAT = "geovr-teacher-cache-1"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class TeacherCache:
    """Per-sample store of one teacher's outputs under ``root``.

    ``teacher_key``: ``teacher.cache_key()``; ``layers``: the feature layers requested (part of the key).
    Counters ``hits``, ``misses``, ``writes``, ``stale`` are kept for progress reports and tests.
    """

    def __init__(self, root: str | os.PathLike, teacher_key: str, layers=(), *, mode: str = "auto"):
        if mode not in ("auto", "off", "only"):
            raise ValueError(f"cache mode must be 'auto', 'off' or 'only', got {mode!r}")
        self.root, self.teacher_key, self.layers, self.mode = Path(root), teacher_key, tuple(layers), mode
        self.dir = self.root / _digest(teacher_key)[:16]
        self.hits = self.misses = self.writes = self.stale = 0

    def entry_meta(self, sample_id: str, frame_indices, size) -> dict[str, str]:
        """Metadata identifying one entry (everything its output depends on)."""
        return {"format": FORMAT, "teacher_key": self.teacher_key, "sample_id": str(sample_id),
                "frame_indices": json.dumps([int(i) for i in frame_indices]),
                "resolution": f"{int(size[0])}x{int(size[1])}", "layers": json.dumps(list(self.layers))}

    def path_for(self, meta: dict[str, str]) -> Path:
        """File of the entry described by ``meta``."""
        key = _digest(json.dumps(meta, sort_keys=True))
        return self.dir / key[:2] / f"{key}.safetensors"

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

    def load(self, sample_id: str, frame_indices, size) -> dict[str, torch.Tensor] | None:
        """The cached tensors of one sample, or ``None`` on a miss (mode ``"only"`` raises instead)."""
        meta = self.entry_meta(sample_id, frame_indices, size)
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
                raise DataError(f"teacher cache entry {path} is stale (written for {found}, expected {meta}); "
                                f"run `geovr cache RECIPE` to recompute it, or set trainer.cache = \"auto\"")
            return None
        self.misses += 1
        if self.mode == "only":
            others = self.other_keys()
            hint = (f"; the cache holds outputs of {len(others)} other teacher key(s), i.e. the teacher's weights or "
                    f"options changed since it was filled (stale)" if others else "")
            raise DataError(f"teacher cache miss (trainer.cache = \"only\"): sample {sample_id!r}, frames "
                            f"{[int(i) for i in frame_indices]}, resolution {size[0]}x{size[1]}, layers "
                            f"{list(self.layers)} not in {self.dir}{hint}. Fill the cache with `geovr cache RECIPE` "
                            f"or set trainer.cache = \"auto\"")
        return None

    def store(self, sample_id: str, frame_indices, size, tensors: dict[str, torch.Tensor]) -> Path:
        """Write one sample's tensors atomically (temporary file + ``os.replace``)."""
        meta = self.entry_meta(sample_id, frame_indices, size)
        path = self.path_for(meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = self.dir / "teacher.json"
        if not info.is_file():
            _atomic_text(info, json.dumps({"teacher_key": self.teacher_key}, indent=2))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.writes += 1
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
    fully cached batch the teacher is not run; otherwise it runs on the whole batch (so results equal the
    uncached run) and the missing entries are stored.
    """

    def __init__(self, teacher, *, layers=None, cache: TeacherCache | None = None, device="cpu"):
        self.teacher, self.layers, self.cache, self.device = teacher, layers, cache, torch.device(device)
        if hasattr(teacher, "eval"):
            teacher.eval()
        if hasattr(teacher, "requires_grad_"):
            teacher.requires_grad_(False)
        self.teacher_device = _module_device(teacher, device)

    def encode(self, batch: Batch) -> TeacherOutput:
        """``batch.frames`` ``[B,S,3,H,W]`` → TeacherOutput (``features`` ``[B,S,h,w,C]``, ``depth`` ``[B,S,H',W']`` …).
        A ragged batch is encoded sample by sample (:meth:`Batch.split`) into a ragged TeacherOutput."""
        if batch.ragged:
            return TeacherOutput.stack_samples([self.encode(one) for one in batch.split()])
        size = tuple(batch.frames.shape[-2:])
        fidx = batch.frame_indices if batch.frame_indices is not None else \
            torch.arange(batch.num_frames).expand(batch.batch_size, -1)
        found = None
        if self.cache is not None and self.cache.mode != "off":
            found = [self.cache.load(sid, fidx[i].tolist(), size) for i, sid in enumerate(batch.sample_ids)]
        if found is not None and all(f is not None for f in found):
            flat = {k: torch.stack([f[k] for f in found]) for k in found[0]}
        else:
            with torch.no_grad():
                out = self.teacher.encode(batch.frames.to(self.teacher_device), self.layers,
                                          batch=batch.to(self.teacher_device))
            flat = out.tensors()
            if found is not None:
                for i, sid in enumerate(batch.sample_ids):
                    if found[i] is None:
                        self.cache.store(sid, fidx[i].tolist(), size, {k: v[i] for k, v in flat.items()})
        flat = {k: (v.to(self.device, torch.float32) if v.is_floating_point() else v.to(self.device))
                for k, v in flat.items()}
        return TeacherOutput.from_tensors(flat)


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


def make_sources(context, *, mode: str, cache_dir: str, device) -> tuple[TeacherSource | None, TeacherSource | None]:
    """Teacher and metric-teacher sources for ``context`` (``None`` where the recipe has none)."""
    configs = [c.config for c in getattr(context.recipe, "objectives", []) or []] if context.recipe else []
    out = []
    for teacher in (context.teacher, context.metric_teacher):
        if teacher is None:
            out.append(None)
            continue
        layers = teacher_layers(teacher, context.objectives, configs)
        cache = None
        if mode != "off":
            cache = TeacherCache(cache_dir, teacher.cache_key(), layers or (), mode=mode)
            if mode == "auto" and not cache.dir.is_dir() and cache.other_keys():
                warnings.warn(f"teacher cache {cache_dir}: no entries for the current teacher key; entries of "
                              f"{len(cache.other_keys())} other key(s) are stale and ignored", stacklevel=2)
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
        per = [merge_metric(out.sample(i), TeacherOutput(metric_depth=md[i][None] if isinstance(md, list)
                                                         else md[i:i + 1])).metric_depth[0] for i in range(n)]
        out.metric_depth = per
        return out
    if out.depth is not None and tuple(md.shape[-2:]) != tuple(out.depth.shape[-2:]):
        B, S = md.shape[:2]
        md = torch.nn.functional.interpolate(md.reshape(B * S, 1, *md.shape[-2:]), size=out.depth.shape[-2:],
                                             mode="bilinear", align_corners=False).reshape(B, S, *out.depth.shape[-2:])
    out.metric_depth = md
    return out


def precompute(context, *, progress: bool = True, split: str = "train", config=None) -> dict:
    """Fill the teacher cache for the ``split`` dataset of ``context`` (the ``geovr cache`` verb).

    ``config`` is the trainer's :class:`~geovr.train.configs.AccelerateTrainerConfig` (default: the
    recipe's, else defaults); batches follow its ``batch_size``. Returns counts
    ``{"samples", "hits", "written", "stale"}`` summed over the teacher and metric teacher.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from geovr.data.collate import collate
    from geovr.train.configs import AccelerateTrainerConfig

    if config is None:
        trainer = getattr(context.recipe, "trainer", None) if context.recipe is not None else None
        config = trainer.config if trainer is not None and isinstance(trainer.config, AccelerateTrainerConfig) \
            else AccelerateTrainerConfig()
    if context.teacher is None and context.metric_teacher is None:
        raise DataError("nothing to cache: the recipe has no [teacher] or [metric_teacher]")
    dataset = context.datasets.get(split)
    if dataset is None:
        raise DataError(f"nothing to cache: the recipe has no [data.{split}] table")
    teacher, metric = make_sources(context, mode="auto", cache_dir=config.resolved_cache_dir(),
                                   device=context.device)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, collate_fn=collate,
                        num_workers=config.num_workers)
    n = 0
    for batch in tqdm(loader, desc="geovr cache", unit="batch", disable=not progress):
        for src in (teacher, metric):
            if src is not None:
                src.encode(batch)
        n += batch.batch_size
    caches = [s.cache for s in (teacher, metric) if s is not None]
    return {"samples": n, "hits": sum(c.hits for c in caches), "written": sum(c.writes for c in caches),
            "stale": sum(c.stale for c in caches), "cache_dir": str(config.resolved_cache_dir())}
