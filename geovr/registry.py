"""Component registry: which plugin registered which component, and how to build it.

Components are addressed by ``(kind, name)``. A name registered by two plugins is kept for both and
reported as a :class:`DuplicateComponentError` when used bare; ``"dist-name:component"`` picks one.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from geovr.errors import DuplicateComponentError, GeovrError, UnknownComponentError

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

#: hook name → component kind
HOOK_KINDS = {
    "register_backbones": "backbone",
    "register_teachers": "teacher",
    "register_objectives": "objective",
    "register_datasets": "dataset",
    "register_trainers": "trainer",
    "register_evaluators": "evaluator",
    "register_callbacks": "callback",
}
KINDS = tuple(HOOK_KINDS.values())


@attrs.frozen
class ComponentSpec:
    """One registered component. ``factory`` is a callable or a lazy ``"module:attr"`` string."""

    kind: str
    name: str
    factory: Any
    plugin: str
    distribution: str
    config: type | None = None
    aliases: tuple[str, ...] = ()
    summary: str | None = None

    def load_factory(self) -> Callable[..., Any]:
        """Resolve a lazy ``"module:attr"`` factory (imports the module now)."""
        if not isinstance(self.factory, str):
            return self.factory
        module, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise GeovrError(
                f"{self.kind} {self.name!r} from {self.distribution!r}: cannot import factory "
                f"{self.factory!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return obj

    def parse_config(self, table: dict[str, Any]):
        """Validate a recipe table (without ``component``); see :func:`geovr.recipe.validate.structure`."""
        from geovr.recipe.configs import parse_component_config

        return parse_component_config(self, table)

    def build(self, table: dict[str, Any] | Any, context: BuildContext | None = None):
        """Validate ``table`` (if a dict) and call the factory with ``(config, context)``."""
        from geovr.protocols import BuildContext

        config = self.parse_config(table) if isinstance(table, dict) else table
        return self.create(config, context if context is not None else BuildContext())

    def create(self, config, context: BuildContext, *, where: str | None = None):
        """Call the factory with ``(config, context)``. A :class:`GeovrError` passes through; any other
        exception (including ``SystemExit``) becomes one naming the recipe place, the component, its
        plugin and distribution, with the original as ``__cause__``."""
        factory = self.load_factory()
        try:
            return factory(config, context)
        except GeovrError:
            raise
        except (Exception, SystemExit) as exc:
            place = f"{where}: " if where else ""
            raise GeovrError(
                f"{place}{self.kind} {self.name!r} failed to build: {type(exc).__name__}: {exc} "
                f"(factory {self._factory_name()} of plugin {self.plugin!r}, distribution "
                f"{self.distribution!r})"
            ) from exc

    def _factory_name(self) -> str:
        if isinstance(self.factory, str):
            return self.factory
        return f"{getattr(self.factory, '__module__', '?')}:{getattr(self.factory, '__qualname__', self.factory)}"


class Registry:
    """All components of all loaded plugins."""

    def __init__(self) -> None:
        self._specs: dict[str, dict[str, list[ComponentSpec]]] = {k: {} for k in KINDS}

    def add(self, spec: ComponentSpec) -> None:
        """Add ``spec`` under its name and aliases. Same plugin twice → error; two plugins → ambiguous."""
        if spec.kind not in self._specs:
            raise GeovrError(f"unknown component kind {spec.kind!r}; expected one of {', '.join(KINDS)}")
        if not spec.name or ":" in spec.name:
            raise GeovrError(f"invalid {spec.kind} name {spec.name!r} from {spec.distribution!r}")
        for key in (spec.name, *spec.aliases):
            entries = self._specs[spec.kind].setdefault(key, [])
            if any(e.plugin == spec.plugin for e in entries):
                raise DuplicateComponentError(spec.kind, key, spec.distribution, spec.distribution)
            entries.append(spec)

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered (rollback of a broken plugin)."""
        for by_name in self._specs.values():
            for key in list(by_name):
                by_name[key] = [s for s in by_name[key] if s.plugin != plugin]
                if not by_name[key]:
                    del by_name[key]

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        """Unique specs (aliases folded), sorted by kind then name."""
        kinds = [kind] if kind else list(KINDS)
        seen: dict[tuple, ComponentSpec] = {}
        for k in kinds:
            for entries in self._specs[k].values():
                for s in entries:
                    seen[(s.kind, s.name, s.plugin)] = s
        return sorted(seen.values(), key=lambda s: (KINDS.index(s.kind), s.name, s.distribution))

    def names(self, kind: str) -> list[str]:
        """Sorted names and aliases of ``kind``."""
        return sorted(self._specs[kind])

    def get(self, kind: str, name: str) -> ComponentSpec:
        """Look up ``name`` (or ``"dist-name:name"``); raises with suggestions when unknown."""
        if kind not in self._specs:
            raise GeovrError(f"unknown component kind {kind!r}; expected one of {', '.join(KINDS)}")
        dist = None
        bare = name
        if ":" in name:
            dist, _, bare = name.partition(":")
        entries = self._specs[kind].get(bare, [])
        if dist is not None:
            entries = [e for e in entries if _norm(e.distribution) == _norm(dist) or e.plugin == dist]
        if not entries:
            raise UnknownComponentError(kind, name, self.names(kind), self.suggest(kind, bare))
        if len(entries) > 1:
            raise DuplicateComponentError(kind, bare, entries[0].distribution, entries[1].distribution)
        return entries[0]

    def suggest(self, kind: str, name: str) -> list[str]:
        return difflib.get_close_matches(name, self.names(kind), n=3, cutoff=0.6)

    def __contains__(self, item: tuple[str, str]) -> bool:
        kind, name = item
        try:
            self.get(kind, name)
        except GeovrError:
            return False
        return True


def _norm(dist: str) -> str:
    return dist.lower().replace("_", "-").replace(".", "-")


def make_register(registry: Registry, kind: str, plugin: str, distribution: str, added: list | None = None):
    """The ``register`` callback handed to one plugin's hook implementation."""

    def register(
        name: str,
        factory: Any,
        *,
        config: type | None = None,
        aliases: Iterable[str] = (),
        summary: str | None = None,
    ) -> None:
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise GeovrError(
                f"{kind} {name!r} from {distribution!r}: factory must be a callable or a 'module:attr' "
                f"string, got {factory!r}"
            )
        if config is not None and not attrs.has(config):
            raise GeovrError(f"{kind} {name!r} from {distribution!r}: config must be an attrs class")
        spec = ComponentSpec(kind, name, factory, plugin, distribution, config, tuple(aliases), summary)
        registry.add(spec)
        if added is not None:
            added.append(spec)

    return register
