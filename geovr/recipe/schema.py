"""The validated recipe: attrs records (torch-free)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

SCHEMA_VERSION = 1
TOP_LEVEL_KEYS = (
    "schema",
    "name",
    "description",
    "seed",
    "output_dir",
    "extends",
    "backbone",
    "teacher",
    "metric_teacher",
    "objectives",
    "data",
    "trainer",
    "evaluators",
    "callbacks",
)
SINGLE_TABLES = {"backbone": "backbone", "teacher": "teacher", "metric_teacher": "teacher", "trainer": "trainer"}
ARRAY_TABLES = {"objectives": "objective", "evaluators": "evaluator", "callbacks": "callback"}
DATA_SPLITS = ("train", "eval")
DEFAULT_TRAINER = "accelerate"


@attrs.define
class ComponentChoice:
    """One component table of a recipe: where it sits, what it names, its validated config."""

    where: str  # "backbone", "objectives.1", "data.train"
    kind: str  # "backbone", "teacher", ...
    component: str  # the name as written
    options: dict[str, Any]
    spec: Any = None  # geovr.registry.ComponentSpec
    config: Any = None  # the attrs config instance (or dict)

    def build(self, context: BuildContext):
        """Call the registered factory with ``(config, context)``."""
        return self.spec.load_factory()(self.config, context)


@attrs.define
class Recipe:
    """A fully validated recipe. ``raw`` is the merged dict after ``extends`` and overrides."""

    name: str
    description: str
    seed: int
    output_dir: str
    backbone: ComponentChoice | None
    teacher: ComponentChoice | None
    metric_teacher: ComponentChoice | None
    objectives: list[ComponentChoice]
    data: dict[str, ComponentChoice]
    trainer: ComponentChoice | None
    evaluators: list[ComponentChoice]
    callbacks: list[ComponentChoice]
    raw: dict[str, Any]
    source: str | None = None
    #: ``{dotted.key: origin}`` of every value written in the recipe files or overrides (the file
    #: path, or ``override key=value``); keys not listed are component defaults
    origins: dict[str, str] = attrs.Factory(dict)

    def components(self) -> list[ComponentChoice]:
        """Every selected component, in build order."""
        singles = [self.backbone, self.teacher, self.metric_teacher]
        out = [c for c in singles if c is not None] + list(self.objectives)
        out += [self.data[s] for s in DATA_SPLITS if s in self.data]
        out += [c for c in [self.trainer] if c is not None] + list(self.evaluators) + list(self.callbacks)
        return out
