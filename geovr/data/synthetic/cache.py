"""On-disk cache of rendered synthetic scenes, keyed by the world's options.

A rendered scene is a pure function of ``(scene seed, num_objects, num_frames, image_size, trajectory, span, walls)``
(plus the renderer version), so every run that asks for the same scene (every arm and seed of an
ablation, every epoch, ``geovr eval``) can read it instead of rendering it again.

Layout: ``<root>/<key[:2]>/<key>.safetensors`` where ``key`` is the SHA-256 of the options (JSON, sorted
keys) and :data:`VERSION`. Each file holds ``rgb [S,H,W,3] uint8`` (the precision of a video),
``depth [S,H,W] float32`` (metres), ``ids [S,H,W] uint8`` instance ids, ``intrinsics [S,3,3]``,
``extrinsics [S,3,4]`` (float64) and, in the metadata, the options, the trajectory kind and the
scene's questions (JSON). Writes go to a temporary file in the same directory renamed into place
(atomic): concurrent runs filling the same cache never read a half-written entry. The root is
``$GEOVR_CACHE_DIR/scenes`` (default ``~/.cache/geovr/scenes``) unless given.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

#: Bump when the renderer, the scene generator or the question generator change their output.
VERSION = "scenes-v2"


def default_root() -> Path:
    """``$GEOVR_CACHE_DIR/scenes`` (default ``~/.cache/geovr/scenes``)."""
    base = os.environ.get("GEOVR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "geovr")
    return Path(base) / "scenes"


def scene_key(options: dict) -> str:
    """Content key of a rendered scene: SHA-256 of :data:`VERSION` and ``options`` (JSON, sorted keys)."""
    text = json.dumps({"version": VERSION, **options}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class SceneCache:
    """Read/write rendered scenes under ``root`` (see the module docstring); ``hits``/``misses`` count
    :meth:`get` results."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_root()
        self.hits = self.misses = 0

    def path(self, options: dict) -> Path:
        key = scene_key(options)
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, options: dict) -> dict | None:
        """The entry for ``options`` (``{"rgb", "depth", "ids", "intrinsics", "extrinsics", "kind",
        "records"}``) or ``None``; an unreadable entry (e.g. from a crashed older version) is a miss."""
        from safetensors import safe_open

        p = self.path(options)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                out = {k: f.get_tensor(k) for k in ("rgb", "depth", "ids", "intrinsics", "extrinsics")}
            if json.loads(meta.get("options", "null")) != json.loads(json.dumps(options)):
                raise ValueError("options differ (hash collision or edited file)")
            out["kind"] = meta["kind"]
            out["records"] = json.loads(meta["records"])
        except (OSError, ValueError, KeyError, RuntimeError, Exception):  # noqa: BLE001 - any broken entry is a miss
            self.misses += 1
            return None
        self.hits += 1
        return out

    def put(self, options: dict, entry: dict) -> Path:
        """Write ``entry`` (tensors as in :meth:`get`, plus ``kind`` and ``records``) atomically."""
        from safetensors.torch import save_file

        p = self.path(options)
        p.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: entry[k].contiguous() for k in ("rgb", "depth", "ids", "intrinsics", "extrinsics")}
        meta = {
            "options": json.dumps(options, sort_keys=True),
            "kind": str(entry["kind"]),
            "records": json.dumps(entry["records"]),
            "version": VERSION,
        }
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=p.parent)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return p
