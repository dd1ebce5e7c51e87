"""WebDataset-style tar shards read in place (no extraction): one sample = the members sharing a key.

A shard ``shard-000000.tar`` holds ``<key>.json`` (the record) and ``<key>.mp4`` (its video) or
``<key>.jpg``/``<key>.png`` (an image), grouped by key with webdataset's own naming rule
(:func:`webdataset.tariterators.base_plus_ext`: the key is the name up to the first dot of its last path
component). :func:`index_shard` walks the tar headers once (seeking past the member data, so a shard is
never read whole or written to disk); :func:`read_member` then reads one member's bytes at its offset.
Shards may sit on any mounted file system, local or network, and need no room on the local disk; a run
holds one sample's bytes in memory at a time per data-loader worker.
"""

from __future__ import annotations

import glob
import os
import tarfile
from pathlib import Path

import attrs

from geovr.errors import DataError

VIDEO_EXTS = ("mp4", "mkv", "webm", "avi", "mov")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


@attrs.frozen
class ShardSample:
    """One key of one shard: ``members`` maps an extension (``"json"``, ``"mp4"``) to ``(offset, size)``
    of its bytes in the tar file."""

    shard: str
    key: str
    members: dict

    @property
    def where(self) -> str:
        """``shard:key`` for messages."""
        return f"{self.shard}:{self.key}"

    def media_ext(self) -> str | None:
        """The video extension of the sample, else its image extension, else ``None``."""
        for ext in (*VIDEO_EXTS, *IMAGE_EXTS):
            if ext in self.members:
                return ext
        return None


def expand_shards(spec: str | list[str]) -> list[str]:
    """Local shard paths from a path, a glob (``data/*.tar``), a brace pattern (``shard-{000..009}.tar``)
    or a list of these; sorted within each pattern. Raises :class:`DataError` when one matches nothing."""
    from braceexpand import braceexpand

    out: list[str] = []
    for pattern in [spec] if isinstance(spec, str) else list(spec):
        found: list[str] = []
        for p in braceexpand(os.path.expanduser(pattern)):
            found += sorted(glob.glob(p)) if glob.has_magic(p) else ([p] if os.path.isfile(p) else [])
        if not found:
            raise DataError(f"shards: no tar file matches {pattern!r}")
        out += found
    return out


def index_shard(path: str) -> list[ShardSample]:
    """Every sample (key) of the uncompressed tar ``path`` in file order, reading only the headers."""
    from webdataset.tariterators import base_plus_ext

    samples: list[ShardSample] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            current: str | None = None
            members: dict[str, tuple[int, int]] = {}
            for info in tar:
                if not info.isfile():
                    continue
                prefix, ext = base_plus_ext(info.name)
                if prefix is None or Path(info.name).name.startswith("__"):
                    continue
                if prefix != current:
                    if current is not None:
                        samples.append(ShardSample(path, current, members))
                    current, members = prefix, {}
                members[ext.lower()] = (info.offset_data, info.size)
            if current is not None:
                samples.append(ShardSample(path, current, members))
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{path}: not a readable uncompressed tar shard ({type(exc).__name__}: {exc})") from exc
    return samples


def read_member(sample: ShardSample, ext: str) -> bytes:
    """The bytes of member ``<key>.<ext>`` of ``sample`` (one seek and one read)."""
    if ext not in sample.members:
        raise DataError(f"{sample.where}: no .{ext} member (has {sorted(sample.members)})")
    offset, size = sample.members[ext]
    try:
        with open(sample.shard, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
    except OSError as exc:
        raise DataError(f"{sample.where}: cannot read .{ext}: {exc}") from exc
    if len(data) != size:
        raise DataError(f"{sample.where}: .{ext} is truncated ({len(data)} of {size} bytes)")
    return data
