"""Write plain data (a resolved or merged recipe) back as TOML (``tomllib`` only reads)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def to_toml(data: dict[str, Any], _prefix: str = "", *, notes: dict[str, str] | None = None, _path: str = "") -> str:
    """Render a TOML document from plain data (tables, arrays of tables, scalars; ``None`` is omitted).

    ``tomllib.loads(to_toml(d)) == d`` for any such ``d`` without ``None`` values. ``notes`` maps
    dotted keys (array items by index: ``objectives.1.weight``) to a comment written after the value.
    """
    lines: list[str] = []
    for k, v in data.items():
        if v is None or isinstance(v, dict) or _is_table_array(v):
            continue
        note = (notes or {}).get(f"{_path}{k}")
        lines.append(f"{_key(k)} = {_value(v)}" + (f"  # {note}" if note else ""))
    for k, v in data.items():
        name = f"{_prefix}{_key(k)}"
        if isinstance(v, dict):
            body = to_toml(v, f"{name}.", notes=notes, _path=f"{_path}{k}.")
            lines += ["", f"[{name}]", body.rstrip("\n")] if body.strip() else ["", f"[{name}]"]
        elif _is_table_array(v):
            for i, item in enumerate(v):
                body = to_toml(item, f"{name}.", notes=notes, _path=f"{_path}{k}.{i}.")
                lines += ["", f"[[{name}]]"] + ([body.rstrip("\n")] if body.strip() else [])
    text = "\n".join(line for line in lines).strip("\n")
    return text + "\n" if text else ""
