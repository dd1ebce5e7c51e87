"""Exception hierarchy of geovr.

Every error a *user* can cause (bad recipe, unknown component, missing file) derives from
:class:`GeovrError`; the CLI turns these into a readable message and an exit code instead of a
traceback. ``exit_code`` is 2 for usage/recipe errors and 1 for runtime failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class GeovrError(Exception):
    """Base class of all geovr errors a user may see. ``exit_code`` is used by the CLI."""

    exit_code = 1


class UsageError(GeovrError):
    """The command line or an argument is wrong (exit code 2)."""

    exit_code = 2


class RecipeError(GeovrError):
    """A recipe has one or more problems; all are listed at once.

    ``problems`` is a list of human-readable strings, each naming the place (``file:line:col`` or a
    dotted key such as ``objectives.1.weight``) and, where possible, the fix.
    """

    exit_code = 2

    def __init__(self, problems: Sequence[str] | str, *, source: str | None = None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        n = len(self.problems)
        header = f"{n} problem{'s' if n != 1 else ''}{where}:"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


class UnknownComponentError(GeovrError):
    """A recipe or API call names a component that no loaded plugin registered."""

    exit_code = 2

    def __init__(self, kind: str, name: str, known: Iterable[str], suggestions: Sequence[str] = ()):
        self.kind, self.name = kind, name
        self.known = sorted(known)
        self.suggestions = list(suggestions)
        hint = f" Did you mean {' or '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        listing = ", ".join(self.known) if self.known else "(none registered)"
        super().__init__(f"unknown {kind} {name!r}.{hint} Registered {kind}s: {listing}")


class DuplicateComponentError(GeovrError):
    """Two plugins registered the same component name (or alias) for the same kind."""

    exit_code = 2

    def __init__(self, kind: str, name: str, first: str, second: str):
        self.kind, self.name, self.first, self.second = kind, name, first, second
        super().__init__(
            f"{kind} {name!r} is registered by both {first!r} and {second!r}; uninstall one, block one "
            f"with GEOVR_BLOCK_PLUGINS, or address it as '<distribution>:{name}' in the recipe"
        )


class PluginLoadError(GeovrError):
    """A plugin failed to load (raised only under ``GEOVR_STRICT_PLUGINS=1``)."""

    def __init__(self, distribution: str, entry_point: str, exc: BaseException):
        self.distribution, self.entry_point, self.exc = distribution, entry_point, exc
        super().__init__(
            f"plugin {entry_point!r} from distribution {distribution!r} failed to load: {type(exc).__name__}: {exc}"
        )


class CheckpointError(GeovrError):
    """A checkpoint is missing, unreadable, or does not match the model (names the path/keys)."""


class DataError(GeovrError):
    """A data file (video, jsonl, geometry) is missing or corrupt (names the path)."""
