"""Turn a raw recipe dict into a :class:`Recipe`, collecting **every** problem into one RecipeError.

Order of checks (all run; nothing heavy is imported): structure → component names → per-component
options → cross-checks (objective ``requires`` ⊆ teacher ``provides``; config ``check()`` rules).
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from geovr.errors import GeovrError, RecipeError
from geovr.recipe.configs import parse_component_config
from geovr.recipe.load import apply_overrides_tree, load_tree
from geovr.recipe.merge import drop_disabled, origins, plain
from geovr.recipe.schema import (
    ARRAY_TABLES, DATA_SPLITS, DEFAULT_TRAINER, SCHEMA_VERSION, SINGLE_TABLES, TOP_LEVEL_KEYS,
    ComponentChoice, Recipe,
)


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), *, registry=None,
                require_training: bool = False, preflight: bool = False) -> Recipe:
    """Read, override and validate a recipe file. Raises :class:`RecipeError` listing all problems.

    ``preflight=True`` also runs every component's machine checks (files, cached checkpoints; see
    :mod:`geovr.recipe.preflight`) and reports their problems together with the recipe's own."""
    tree, problems = load_tree(path)
    problems += drop_disabled(tree)  # so override indices count the entries that remain
    tree, more = apply_overrides_tree(tree, list(overrides))
    problems += more + drop_disabled(tree)
    recipe = validate(plain(tree), source=str(path), registry=registry, problems=problems,
                      require_training=require_training, preflight=preflight)
    recipe.origins = origins(tree)
    return recipe


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def validate(raw: dict[str, Any], *, source: str | None = None, registry=None,
             problems: list[str] | None = None, require_training: bool = False,
             preflight: bool = False) -> Recipe:
    """Validate ``raw``; see the module docstring. ``require_training`` demands ``data.train``;
    ``preflight`` adds the machine checks of every component whose options parsed (the same checks
    :func:`geovr.recipe.build` runs before building)."""
    if registry is None:
        from geovr.plugins import get_registry

        registry = get_registry()
    problems = list(problems or [])

    # -- structure -----------------------------------------------------------------------------
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"unknown top-level key {key!r}{_suggest(key, TOP_LEVEL_KEYS)}")
    schema = raw.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        problems.append(f"schema: this geovr reads recipe schema {SCHEMA_VERSION}, got {schema!r}")
    scalars = {"name": str, "description": str, "seed": int, "output_dir": str}
    for key, tp in scalars.items():
        if key in raw and (not isinstance(raw[key], tp) or isinstance(raw[key], bool)):
            problems.append(f"{key}: expected {tp.__name__}, got {raw[key]!r}")

    choices: dict[str, Any] = {}

    def choose(where: str, kind: str, table: Any) -> ComponentChoice | None:
        if not isinstance(table, dict):
            problems.append(f"{where}: expected a table with component = \"<name>\", got {table!r}")
            return None
        name = table.get("component")
        if not isinstance(name, str) or not name:
            known = ", ".join(registry.names(kind)) or "(none registered)"
            problems.append(f"{where}: missing component = \"<name>\" (registered {kind}s: {known})")
            return None
        options = {k: v for k, v in table.items() if k != "component"}
        choice = ComponentChoice(where, kind, name, options)
        try:
            choice.spec = registry.get(kind, name)
        except GeovrError as exc:
            problems.append(f"{where}: {exc}")
            return choice
        try:
            choice.config = parse_component_config(choice.spec, options, where=where)
        except RecipeError as exc:
            problems.extend(exc.problems)
        return choice

    for key, kind in SINGLE_TABLES.items():
        if key in raw:
            choices[key] = choose(key, kind, raw[key])
    if "backbone" not in raw:
        problems.append("backbone: missing [backbone] table (e.g. component = \"qwen2_5_vl\")")
    if "trainer" not in raw and require_training:
        choices["trainer"] = choose("trainer", "trainer", {"component": DEFAULT_TRAINER})
    for key, kind in ARRAY_TABLES.items():
        items = raw.get(key, [])
        if not isinstance(items, list):
            problems.append(f"{key}: expected an array of tables ([[{key}]]), got {items!r}")
            items = []
        choices[key] = [c for i, t in enumerate(items) if (c := choose(f"{key}.{i}", kind, t)) is not None]
    data = raw.get("data", {})
    data_choices: dict[str, ComponentChoice] = {}
    if not isinstance(data, dict):
        problems.append(f"data: expected a table with [data.train] / [data.eval], got {data!r}")
        data = {}
    for split, table in data.items():
        if split not in DATA_SPLITS:
            problems.append(f"data: unknown split {split!r}{_suggest(split, DATA_SPLITS)} (valid: train, eval)")
            continue
        c = choose(f"data.{split}", "dataset", table)
        if c is not None:
            data_choices[split] = c
    if require_training and "train" not in data:
        problems.append("data.train: missing [data.train] table (e.g. component = \"synthetic_rooms\")")

    # -- cross-checks --------------------------------------------------------------------------
    provided: set[str] = set()
    known_provides = True
    for key in ("teacher", "metric_teacher"):
        c = choices.get(key)
        if c is None:
            continue
        fn = getattr(c.config, "provides", None)
        if c.config is not None and callable(fn):
            provided |= set(fn())
        else:
            known_provides = False
    for c in choices["objectives"]:
        fn = getattr(c.config, "requires", None)
        if c.config is None or not callable(fn) or not known_provides:
            continue
        missing = sorted(set(fn()) - provided)
        if missing and choices.get("teacher") is None:
            problems.append(f"{c.where}: objective {c.component!r} needs a teacher providing "
                            f"{', '.join(missing)}; add a [teacher] table")
        elif missing:
            t = choices["teacher"].component
            extra = " or a [metric_teacher]" if "metric_depth" in missing else ""
            problems.append(f"{c.where}: objective {c.component!r} requires {', '.join(missing)}, which teacher "
                            f"{t!r}{extra} does not provide (it provides: {', '.join(sorted(provided)) or 'nothing'})")

    teacher = choices.get("teacher")
    depth = _teacher_depth(teacher.config) if teacher is not None and teacher.config is not None else None
    if depth is not None:
        for c in choices["objectives"]:
            layers = getattr(c.config, "teacher_layers", None)
            bad = [x for x in (layers or []) if not isinstance(x, int) or not 0 <= x < depth]
            if bad:
                problems.append(f"{c.where}.teacher_layers: {bad} outside 0..{depth - 1} (teacher "
                                f"{teacher.component!r} has {depth} layers)")

    if preflight:
        from geovr.recipe.preflight import run_preflight

        every = [c for key in ("backbone", "teacher", "metric_teacher", "trainer") if (c := choices.get(key))]
        every += [*choices["objectives"], *data_choices.values(), *choices["evaluators"], *choices["callbacks"]]
        problems += run_preflight(c for c in every if c.config is not None)
    if problems:
        raise RecipeError(problems, source=source)
    return Recipe(
        name=raw.get("name", "unnamed"),
        description=raw.get("description", ""),
        seed=raw.get("seed", 0),
        output_dir=raw.get("output_dir", os.path.join("runs", raw.get("name", "unnamed"))),
        backbone=choices.get("backbone"),
        teacher=choices.get("teacher"),
        metric_teacher=choices.get("metric_teacher"),
        objectives=choices["objectives"],
        data=data_choices,
        trainer=choices.get("trainer"),
        evaluators=choices["evaluators"],
        callbacks=choices["callbacks"],
        raw=raw,
        source=source,
    )


def _teacher_depth(config) -> int | None:
    """A teacher's layer count from its config: ``depth()`` if defined, else ``num_layers``."""
    fn = getattr(config, "depth", None)
    if callable(fn):
        try:
            return fn()
        except Exception:  # an unreadable model config is reported by the teacher's own check()
            return None
    n = getattr(config, "num_layers", None)
    return n if isinstance(n, int) else None
