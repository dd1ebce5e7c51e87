"""JSON-lines reading shared by the ``video_qa`` dataset and the VSI-Bench evaluator (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path

from geovr.errors import DataError


def iter_jsonl(path: str | Path):
    """Yield ``(where, record)`` for each non-blank line of a JSON-lines file, ``where`` = ``"path:line"``;
    a missing file or a line that is not JSON raises :class:`DataError` naming the place."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"annotation file not found: {p}")
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield f"{p}:{lineno}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{p}:{lineno}: invalid JSON: {exc.msg}") from exc
