"""JSON-lines reading and record field checks shared by the ``video_qa`` dataset, the VSI-Bench evaluator
and the QA loop's ``predictions.jsonl`` (torch-free)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from geovr.errors import DataError


def iter_jsonl(path: str | Path, *, truncated_tail_ok: bool = False):
    """Yield ``(where, record)`` for each non-blank line of a JSON-lines file, ``where`` = ``"path:line"``.

    A missing file, a line that is not JSON, or a JSON value that is not an object raises
    :class:`DataError` naming the place. ``truncated_tail_ok``: an unparsable *last* line (a write cut
    short by a crash) is skipped instead.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"annotation file not found: {p}")
    with p.open(encoding="utf-8") as fh:
        lines: Iterable[str] = fh
        last = None
        if truncated_tail_ok:
            lines = fh.read().splitlines()
            last = len(lines)
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                if lineno == last:
                    return
                raise DataError(f"{p}:{lineno}: invalid JSON: {exc.msg}") from exc
            if not isinstance(rec, dict):
                raise DataError(f'{p}:{lineno}: expected a JSON object ({{"key": value, ...}}), got {_kind(rec)}')
            yield f"{p}:{lineno}", rec


def _kind(value) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def is_number(value) -> bool:
    """A JSON number (``int``/``float``, not ``bool``)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: What a field may hold: ``"str"``, ``"id"`` (string or integer), ``"answer"`` (string or finite number),
#: ``"options"`` (``null`` or a list of strings), ``"str?"`` (string or ``null``).
FIELD_RULES = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "str?": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "id": ("a string or an integer", lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))),
    "answer": ("a string or a finite number", lambda v: isinstance(v, str) or (is_number(v) and math.isfinite(v))),
    "options": (
        'null or a list of strings (e.g. ["A. chair", "B. table"])',
        lambda v: v is None or (isinstance(v, list) and all(isinstance(o, str) for o in v)),
    ),
}


def check_fields(rec: Mapping, where: str, fields: Mapping[str, str]) -> None:
    """Raise :class:`DataError` naming ``where`` and every present field of ``rec`` whose value breaks its
    :data:`FIELD_RULES` rule (absent fields are the caller's concern)."""
    bad = []
    for key, rule in fields.items():
        if key not in rec:
            continue
        expected, ok = FIELD_RULES[rule]
        if not ok(rec[key]):
            got = json.dumps(rec[key]) if not isinstance(rec[key], str) else repr(rec[key])
            bad.append(f"{key!r} must be {expected}, got {_kind(rec[key])} {got[:60]}")
    if bad:
        raise DataError(f"{where}: {'; '.join(bad)}")


def positive_number(value, where: str, key: str = "ground_truth") -> float:
    """``float(value)`` when it is a finite number > 0 (a number or numeric text), else :class:`DataError`."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {key!r} of a numerical question must be a number, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise DataError(f"{where}: {key!r} of a numerical question must be a finite number > 0, got {value!r}")
    return x
