"""Read recipe TOML files: ``extends`` chains, ``key=value`` overrides, shipped recipes.

All functions return plain dicts; :mod:`geovr.recipe.validate` turns them into a :class:`Recipe`.
"""

from __future__ import annotations

import copy
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from geovr.errors import RecipeError

_LOC = re.compile(r"\(at line (\d+), column (\d+)\)")


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Parse one TOML file; syntax errors become ``RecipeError("file:line:col: message")``."""
    p = Path(path)
    if not p.is_file():
        hint = ""
        shipped = find_shipped(p.name) if p.suffix == ".toml" else None
        if shipped is not None:
            hint = f"; a shipped recipe of that name exists at {shipped}"
        raise RecipeError([f"{p}: recipe file not found (expected a TOML file){hint}"])
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _LOC.search(msg)
        if m:
            msg = f"{p}:{m.group(1)}:{m.group(2)}: TOML syntax error: {_LOC.sub('', msg).strip()}"
        else:
            msg = f"{p}: TOML syntax error: {msg}"
        raise RecipeError([msg]) from exc
    except UnicodeDecodeError as exc:
        raise RecipeError([f"{p}: not UTF-8 text ({exc})"]) from exc


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; every other value (arrays included) is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_raw(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load a recipe and resolve ``extends`` (a path relative to the file, or a shipped recipe name)."""
    p = Path(path).resolve()
    if p in _chain:
        raise RecipeError([f"{p}: circular 'extends' chain: {' -> '.join(str(c) for c in (*_chain, p))}"])
    data = read_toml(p)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise RecipeError([f"{p}: 'extends' must be a string path, got {parent!r}"])
    parent_path = p.parent / parent
    if not parent_path.exists() and find_shipped(parent) is not None:
        parent_path = find_shipped(parent)
    return deep_merge(load_raw(parent_path, (*_chain, p)), data)


def parse_value(text: str) -> Any:
    """A TOML literal (``0.2``, ``true``, ``[4, 11]``, ``"x"``); anything else is taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Apply ``dotted.key=value`` overrides; integers address array items (``objectives.1.weight``).

    Returns the new dict and the list of problems (bad syntax or a path that does not exist).
    """
    out = copy.deepcopy(data)
    problems: list[str] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"override {item!r}: expected key=value (e.g. trainer.max_steps=10)")
            continue
        parts = key.split(".")
        node: Any = out
        ok = True
        for i, part in enumerate(parts[:-1]):
            here = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    problems.append(f"override {key!r}: {here} is not an index of a {len(node)}-item array")
                    ok = False
                    break
                node = node[int(part)]
            elif isinstance(node, dict):
                nxt = parts[i + 1]
                if part not in node and nxt.isdigit():
                    problems.append(f"override {key!r}: {here} has no item {nxt} (the recipe has no {here} array)")
                    ok = False
                    break
                node = node.setdefault(part, {})
                if not isinstance(node, (dict, list)):
                    problems.append(f"override {key!r}: {here} is a value, not a table")
                    ok = False
                    break
        if not ok:
            continue
        last = parts[-1]
        value = parse_value(raw.strip())
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                problems.append(f"override {key!r}: {last} is not an index of a {len(node)}-item array")
                continue
            node[int(last)] = value
        else:
            node[last] = value
    return out, problems


def shipped_dirs() -> list[Path]:
    """Where shipped recipes live: the source checkout's ``recipes/`` and the installed share dir."""
    here = Path(__file__).resolve().parents[2] / "recipes"
    return [d for d in (here, Path(sys.prefix) / "share" / "geovr" / "recipes") if d.is_dir()]


def shipped_recipes() -> dict[str, Path]:
    """``{name: path}`` of shipped recipes (name = file stem), first directory wins."""
    out: dict[str, Path] = {}
    for d in shipped_dirs():
        for f in sorted(d.glob("*.toml")):
            out.setdefault(f.stem, f)
    return dict(sorted(out.items()))


def find_shipped(name: str) -> Path | None:
    return shipped_recipes().get(Path(name).stem)
