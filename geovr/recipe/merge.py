"""How ``extends`` and overrides combine recipe data, remembering where every value came from.

Rules (documented with examples in docs/recipes.md):

* tables merge key by key; a value (scalars and plain arrays alike) replaces the parent's;
* a table whose ``component`` differs from the parent's replaces the parent's table: the new
  component does not inherit the old one's options;
* arrays of component tables (``[[objectives]]``, ``[[evaluators]]``, ``[[callbacks]]``) merge by
  ``component``: the n-th child entry naming a component updates the parent's n-th entry naming it
  (as a table, by the rules above), an entry naming a new component is appended, and ``enabled =
  false`` drops the inherited entry;
* ``enabled = false`` on any array entry removes it (in a single recipe too, and as an override
  ``objectives.2.enabled=false``); ``enabled = true`` is dropped before validation.

The data is handled as an *annotated tree*: tables are dicts, arrays of tables are lists of dicts,
every other value is a :class:`Leaf` holding the value and its origin (the file that set it, or the
override). :func:`plain` strips the annotations, :func:`origins` flattens them to dotted keys.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs

#: top-level arrays of component tables that merge by ``component``
MERGED_ARRAYS = ("objectives", "evaluators", "callbacks")


@attrs.frozen
class Leaf:
    """A recipe value (scalar or plain array) and what set it: a file path or ``override k=v``."""

    value: Any
    origin: str


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def annotate(data: Any, origin: str) -> Any:
    """The annotated tree of plain recipe data, every value attributed to ``origin``."""
    if isinstance(data, dict):
        return {k: annotate(v, origin) for k, v in data.items()}
    if _is_table_array(data):
        return [annotate(x, origin) for x in data]
    return Leaf(data, origin)


def plain(tree: Any) -> Any:
    """The recipe data of an annotated tree."""
    if isinstance(tree, dict):
        return {k: plain(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [plain(x) for x in tree]
    return tree.value if isinstance(tree, Leaf) else tree


def origins(tree: Any, prefix: str = "") -> dict[str, str]:
    """``{dotted.key: origin}`` of every value (array items by index: ``objectives.1.weight``)."""
    out: dict[str, str] = {}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, Leaf):
            out[key] = v.origin
        else:
            out.update(origins(v, f"{key}."))
    return out


def _component(table: dict) -> Any:
    c = table.get("component")
    return c.value if isinstance(c, Leaf) else None


def merge(base: Any, over: Any, path: tuple[str, ...] = ()) -> tuple[Any, list[str]]:
    """``over`` (the child recipe) on top of ``base`` (its parent); returns the tree and problems."""
    if isinstance(base, dict) and isinstance(over, dict):
        old, new = _component(base), _component(over)
        if old is not None and new is not None and old != new:
            return copy.deepcopy(over), []  # another component: the parent's options do not apply
        out, problems = dict(base), []
        for k, v in over.items():
            if k in base:
                out[k], more = merge(base[k], v, (*path, k))
                problems += more
            else:
                out[k] = copy.deepcopy(v)
        return out, problems
    if len(path) == 1 and path[0] in MERGED_ARRAYS and isinstance(base, list) and isinstance(over, list):
        return _merge_by_component(base, over, path[0])
    return copy.deepcopy(over), []


def _merge_by_component(base: list[dict], over: list[dict], key: str) -> tuple[list[dict], list[str]]:
    out, problems = list(base), []
    seen: dict[Any, int] = {}
    for i, item in enumerate(over):
        name = _component(item)
        origin = next((v.origin for v in item.values() if isinstance(v, Leaf)), "the recipe")
        if name is None:
            problems.append(
                f"{key}: entry {i} of {origin} has no component; in a recipe that extends another, "
                f"each [[{key}]] entry names the component it adds or updates"
            )
            continue
        n = seen.get(name, 0)
        seen[name] = n + 1
        matches = [j for j, b in enumerate(base) if _component(b) == name]
        if n < len(matches):
            out[matches[n]], more = merge(base[matches[n]], item, (key, str(matches[n])))
            problems += more
        elif _enabled(item) is False:
            inherited = ", ".join(sorted({str(_component(b)) for b in base})) or "none"
            problems.append(
                f"{key}: {origin} disables {name!r} (enabled = false), but the recipe it extends "
                f"has no{' further' if n else ''} [[{key}]] entry with that component "
                f"(inherited: {inherited})"
            )
        else:
            out.append(copy.deepcopy(item))
    return out, problems


def _enabled(table: dict) -> Any:
    flag = table.get("enabled")
    return flag.value if isinstance(flag, Leaf) else True


def drop_disabled(tree: dict) -> list[str]:
    """Remove ``enabled = false`` entries of the component arrays (in place) and the ``enabled`` key of
    the others; returns problems for a non-boolean ``enabled``."""
    problems = []
    for key in MERGED_ARRAYS:
        items = tree.get(key)
        if not isinstance(items, list):
            continue
        kept = []
        for i, item in enumerate(items):
            flag = _enabled(item)
            if not isinstance(flag, bool):
                problems.append(f"{key}.{i}.enabled: expected true or false, got {flag!r}")
            if flag is not False:
                kept.append({k: v for k, v in item.items() if k != "enabled"})
        tree[key] = kept
    return problems
