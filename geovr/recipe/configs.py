"""Validate one component's recipe table into its attrs ``config`` class, collecting every problem.

Config classes are plain attrs classes. Field annotations are checked (``int``, ``float``, ``bool``,
``str``, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``, ``Literal[...]``); converters
and validators of the class run afterwards. A class may define ``check(self) -> list[str]`` for
cross-field rules, and teachers/objectives ``provides(self)`` / ``requires(self)`` (frozensets of
:data:`geovr.protocols.TEACHER_OUTPUTS`) for recipe cross-checks.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal, get_args, get_origin

import attrs

from geovr.errors import RecipeError

_NOTHING = attrs.NOTHING


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_type(value: Any, tp: Any) -> bool:
    """True when ``value`` (parsed TOML) fits annotation ``tp``; unknown annotations pass."""
    if tp is Any or tp is None and value is None:
        return True
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(check_type(value, a) for a in get_args(tp))
    if origin is Literal:
        return value in get_args(tp)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and Ellipsis not in get_args(tp):
            return len(value) == len(args) and all(check_type(v, a) for v, a in zip(value, args, strict=False))
        return not args or all(check_type(v, args[0]) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False
        kv = get_args(tp)
        return not kv or all(check_type(v, kv[1]) for v in value.values())
    return True


def parse_component_config(spec, table: dict[str, Any], *, where: str | None = None):
    """Return ``spec.config(**table)`` or raise :class:`RecipeError` listing every problem.

    ``where`` prefixes problems (e.g. ``"objectives.1"``); without a config class the dict is returned.
    """
    from geovr.unpickling import OPTION, RECIPE_REFUSAL

    where = where or spec.kind
    problems: list[str] = []
    if OPTION in table:  # unpickling is opted into from the command line or environment only
        table = dict(table)
        if table.pop(OPTION) is not False:
            problems.append(f"{where}.{OPTION}: {RECIPE_REFUSAL}")
    cls = spec.config
    if cls is None:
        if problems:
            raise RecipeError(problems)
        return dict(table)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolved forward refs: skip annotation checks
        hints = {}
    fields = {f.name: f for f in attrs.fields(cls)}
    public = {f.alias if f.alias else f.name: f for f in fields.values() if f.init}
    for key in table:
        if key not in public:
            close = difflib.get_close_matches(key, list(public), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(sorted(public)) or "(none)"
            problems.append(f"{where}: unknown option {key!r} for {spec.kind} {spec.name!r}{hint} (valid: {valid})")
    for key, f in public.items():
        if key not in table and f.default is _NOTHING:
            problems.append(f"{where}: missing required option {key!r} for {spec.kind} {spec.name!r}")
        elif key in table and f.name in hints and not check_type(table[key], hints[f.name]):
            problems.append(
                f"{where}.{key}: expected {_type_name(hints[f.name])}, got {table[key]!r} ({type(table[key]).__name__})"
            )
    if problems:
        raise RecipeError(problems)
    try:
        config = cls(**{k: v for k, v in table.items()})
    except (TypeError, ValueError) as exc:
        raise RecipeError([f"{where}: {exc}"]) from exc
    check = getattr(config, "check", None)
    if callable(check):
        extra = [f"{where}: {p}" for p in (check() or [])]
        if extra:
            raise RecipeError(extra)
    return config
