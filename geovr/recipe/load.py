"""Read recipe TOML files: ``extends`` chains, ``key=value`` overrides, shipped recipes.

:func:`load_raw` and :func:`apply_overrides` return plain dicts; ``load_tree`` and
``apply_overrides_tree`` work on the annotated trees of :mod:`geovr.recipe.merge`, which remember the
file (or override) that set each value. :mod:`geovr.recipe.validate` turns the data into a
:class:`Recipe`.
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
from geovr.recipe.merge import Leaf, annotate, merge, plain

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


def _display(p: Path) -> str:
    """``p`` relative to the working directory when it is below it (origins in ``geovr show``)."""
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def load_tree(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """Load a recipe as an annotated tree and resolve ``extends`` (a path relative to the file, or a
    shipped recipe name) with the rules of :mod:`geovr.recipe.merge`; returns ``(tree, problems)``."""
    p = Path(path).resolve()
    if p in _chain:
        raise RecipeError([f"{p}: circular 'extends' chain: {' -> '.join(str(c) for c in (*_chain, p))}"])
    data = read_toml(p)
    parent = data.pop("extends", None)
    tree = annotate(data, _display(p))
    if parent is None:
        return tree, []
    if not isinstance(parent, str):
        raise RecipeError([f"{p}: 'extends' must be a string path, got {parent!r}"])
    parent_path = p.parent / parent
    shipped = find_shipped(parent) if not parent_path.exists() else None
    if shipped is not None:
        parent_path = shipped
    base, problems = load_tree(parent_path, (*_chain, p))
    merged, more = merge(base, tree)
    return merged, problems + more


def load_raw(path: str | os.PathLike) -> dict[str, Any]:
    """Load a recipe and resolve ``extends`` (plain data; raises :class:`RecipeError` on merge problems)."""
    tree, problems = load_tree(path)
    if problems:
        raise RecipeError(problems, source=str(path))
    return plain(tree)


def parse_value(text: str) -> Any:
    """A TOML literal (``0.2``, ``true``, ``[4, 11]``, ``"x"``); anything else is taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Apply ``dotted.key=value`` overrides to plain data; integers address array items
    (``objectives.1.weight``, ``teacher.layers.0``).

    Returns the new dict and the list of problems (bad syntax or a path that does not exist).
    """
    tree, problems = apply_overrides_tree(annotate(data, "recipe"), overrides)
    return plain(tree), problems


def apply_overrides_tree(tree: dict[str, Any], overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """:func:`apply_overrides` on an annotated tree; each value set is attributed to ``override k=v``."""
    out = copy.deepcopy(tree)
    problems: list[str] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"override {item!r}: expected key=value (e.g. trainer.max_steps=10)")
            continue
        origin = f"override {key}={raw.strip()}"
        value = parse_value(raw.strip())
        problem = _set(out, key.split("."), value, origin)
        if problem:
            problems.append(f"override {key!r}: {problem}")
    return out, problems


def _set(tree: dict[str, Any], parts: list[str], value: Any, origin: str) -> str | None:
    """Set the value at ``parts`` (creating tables); the problem text, or ``None`` when done."""
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        here = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return f"{here} is not an index of a {len(node)}-item array"
            node = node[int(part)]
            continue
        nxt = parts[i + 1]
        if part not in node and nxt.isdigit():
            return f"{here} has no item {nxt} (the recipe has no {here} array)"
        child = node.setdefault(part, {})
        if isinstance(child, Leaf) and isinstance(child.value, list) and i == len(parts) - 2:
            if not nxt.isdigit() or int(nxt) >= len(child.value):
                return f"{nxt} is not an index of the {len(child.value)}-item array {here}"
            items = list(child.value)
            items[int(nxt)] = value
            node[part] = Leaf(items, origin)
            return None
        if not isinstance(child, (dict, list)):
            return f"{here} is a value, not a table"
        node = child
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            return f"{last} is not an index of a {len(node)}-item array"
        node[int(last)] = annotate(value, origin)
    else:
        node[last] = annotate(value, origin)
    return None


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
