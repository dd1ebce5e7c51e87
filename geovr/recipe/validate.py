"""Turn a raw recipe dict into a :class:`Recipe`, collecting **every** problem into one RecipeError.

Order of checks (all run; nothing heavy is imported): structure (:func:`structure_problems`) → component
names and per-component options (with each config's ``check()`` rules) → cross-checks between components
(the rules of :mod:`geovr.rules` on the configs: :func:`provides_problems`, :func:`teacher_layer_problems`)
→ optionally the machine checks (:mod:`geovr.recipe.preflight`).
"""

from __future__ import annotations

import difflib
import os
from typing import TYPE_CHECKING, Any

from geovr.errors import GeovrError, RecipeError
from geovr.recipe.configs import parse_component_config
from geovr.recipe.load import apply_overrides_tree, load_tree
from geovr.recipe.merge import drop_disabled, origins, plain
from geovr.recipe.schema import (
    ARRAY_TABLES,
    DATA_SPLITS,
    DEFAULT_TRAINER,
    SCHEMA_VERSION,
    SINGLE_TABLES,
    TOP_LEVEL_KEYS,
    ComponentChoice,
    Recipe,
)
from geovr.rules import requires_problem, teacher_layers_problem

if TYPE_CHECKING:
    from geovr.registry import Registry


def load_recipe(
    path: str | os.PathLike,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    registry: Registry | None = None,
    require_training: bool = False,
    preflight: bool = False,
) -> Recipe:
    """Read, override and validate a recipe file. Raises :class:`RecipeError` listing all problems.

    ``preflight=True`` also runs every component's machine checks (files, cached checkpoints; see
    :mod:`geovr.recipe.preflight`) and reports their problems together with the recipe's own."""
    tree, problems = load_tree(path)
    problems += drop_disabled(tree)  # so override indices count the entries that remain
    tree, more = apply_overrides_tree(tree, list(overrides))
    problems += more + drop_disabled(tree)
    recipe = validate(
        plain(tree),
        source=str(path),
        registry=registry,
        problems=problems,
        require_training=require_training,
        preflight=preflight,
    )
    recipe.origins = origins(tree)
    return recipe


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def validate(
    raw: dict[str, Any],
    *,
    source: str | None = None,
    registry: Registry | None = None,
    problems: list[str] | None = None,
    require_training: bool = False,
    preflight: bool = False,
) -> Recipe:
    """Validate ``raw``; see the module docstring. ``require_training`` demands ``data.train``;
    ``preflight`` adds the machine checks of every component whose options parsed (the same checks
    :func:`geovr.recipe.build` runs before building)."""
    if registry is None:
        from geovr.plugins import get_registry

        registry = get_registry()
    problems = list(problems or [])
    problems += structure_problems(raw)
    chooser = _Chooser(registry, problems)
    choices = _choose_components(raw, chooser, require_training=require_training)
    data = _choose_data(raw, chooser, require_training=require_training)
    problems += provides_problems(choices)
    problems += teacher_layer_problems(choices)
    if preflight:
        from geovr.recipe.preflight import run_preflight

        every = [c for key in ("backbone", "teacher", "metric_teacher", "trainer") if (c := choices.get(key))]
        every += [*choices["objectives"], *data.values(), *choices["evaluators"], *choices["callbacks"]]
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
        data=data,
        trainer=choices.get("trainer"),
        evaluators=choices["evaluators"],
        callbacks=choices["callbacks"],
        raw=raw,
        source=source,
    )


# -- structure -------------------------------------------------------------------------------------
def structure_problems(raw: dict[str, Any]) -> list[str]:
    """Unknown top-level keys, the schema version and the types of the scalar keys."""
    problems = [
        f"unknown top-level key {key!r}{_suggest(key, TOP_LEVEL_KEYS)}" for key in raw if key not in TOP_LEVEL_KEYS
    ]
    schema = raw.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        problems.append(f"schema: this geovr reads recipe schema {SCHEMA_VERSION}, got {schema!r}")
    scalars = {"name": str, "description": str, "seed": int, "output_dir": str}
    for key, tp in scalars.items():
        if key in raw and (not isinstance(raw[key], tp) or isinstance(raw[key], bool)):
            problems.append(f"{key}: expected {tp.__name__}, got {raw[key]!r}")
    return problems


# -- component names and options -------------------------------------------------------------------
class _Chooser:
    """Turns one recipe table into a :class:`ComponentChoice` (name looked up, options parsed), adding
    what is wrong to ``problems``."""

    def __init__(self, registry: Registry, problems: list[str]):
        self.registry, self.problems = registry, problems

    def __call__(self, where: str, kind: str, table: Any) -> ComponentChoice | None:
        if not isinstance(table, dict):
            self.problems.append(f'{where}: expected a table with component = "<name>", got {table!r}')
            return None
        name = table.get("component")
        if not isinstance(name, str) or not name:
            known = ", ".join(self.registry.names(kind)) or "(none registered)"
            self.problems.append(f'{where}: missing component = "<name>" (registered {kind}s: {known})')
            return None
        options = {k: v for k, v in table.items() if k != "component"}
        choice = ComponentChoice(where, kind, name, options)
        try:
            choice.spec = self.registry.get(kind, name)
        except GeovrError as exc:
            self.problems.append(f"{where}: {exc}")
            return choice
        try:
            choice.config = parse_component_config(choice.spec, options, where=where)
        except RecipeError as exc:
            self.problems.extend(exc.problems)
        return choice


def _choose_components(raw: dict[str, Any], choose: _Chooser, *, require_training: bool) -> dict[str, Any]:
    """The single tables (``backbone``, ``teacher``, …) and the arrays of tables (``objectives``, …)."""
    choices: dict[str, Any] = {}
    for key, kind in SINGLE_TABLES.items():
        if key in raw:
            choices[key] = choose(key, kind, raw[key])
    if "backbone" not in raw:
        choose.problems.append('backbone: missing [backbone] table (e.g. component = "qwen2_5_vl")')
    if "trainer" not in raw and require_training:
        choices["trainer"] = choose("trainer", "trainer", {"component": DEFAULT_TRAINER})
    for key, kind in ARRAY_TABLES.items():
        items = raw.get(key, [])
        if not isinstance(items, list):
            choose.problems.append(f"{key}: expected an array of tables ([[{key}]]), got {items!r}")
            items = []
        choices[key] = [c for i, t in enumerate(items) if (c := choose(f"{key}.{i}", kind, t)) is not None]
    return choices


def _choose_data(raw: dict[str, Any], choose: _Chooser, *, require_training: bool) -> dict[str, ComponentChoice]:
    """The ``[data.train]`` / ``[data.eval]`` datasets."""
    data = raw.get("data", {})
    out: dict[str, ComponentChoice] = {}
    if not isinstance(data, dict):
        choose.problems.append(f"data: expected a table with [data.train] / [data.eval], got {data!r}")
        data = {}
    for split, table in data.items():
        if split not in DATA_SPLITS:
            choose.problems.append(f"data: unknown split {split!r}{_suggest(split, DATA_SPLITS)} (valid: train, eval)")
            continue
        c = choose(f"data.{split}", "dataset", table)
        if c is not None:
            out[split] = c
    if require_training and "train" not in data:
        choose.problems.append('data.train: missing [data.train] table (e.g. component = "synthetic_rooms")')
    return out


# -- cross-checks (the rules of geovr.rules, on the configs) ---------------------------------------
def provides_problems(choices: dict[str, Any]) -> list[str]:
    """Each objective's ``requires()`` ⊆ the teachers' ``provides()`` (skipped when a teacher's config
    does not say what it provides)."""
    provided: set[str] = set()
    for key in ("teacher", "metric_teacher"):
        c = choices.get(key)
        if c is None:
            continue
        fn = getattr(c.config, "provides", None)
        if c.config is None or not callable(fn):
            return []
        provided |= set(fn())
    teacher = choices.get("teacher")
    problems = []
    for c in choices["objectives"]:
        fn = getattr(c.config, "requires", None)
        if c.config is None or not callable(fn):
            continue
        problem = requires_problem(
            c.component, fn(), provided, teacher=teacher.component if teacher else None, has_teacher=teacher is not None
        )
        if problem:
            problems.append(f"{c.where}: {problem}")
    return problems


def teacher_layer_problems(choices: dict[str, Any]) -> list[str]:
    """Each objective's ``teacher_layers`` within the teacher's depth (when its config knows the depth)."""
    teacher = choices.get("teacher")
    if teacher is None or teacher.config is None:
        return []
    depth = _teacher_depth(teacher.config)
    if depth is None:
        return []
    problems = []
    for c in choices["objectives"]:
        problem = teacher_layers_problem(
            getattr(c.config, "teacher_layers", None) or [], depth, teacher=teacher.component
        )
        if problem:
            problems.append(f"{c.where}.teacher_layers: {problem}")
    return problems


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
