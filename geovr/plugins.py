"""Plugin loading: built-in plugins + the ``geovr`` entry-point group, isolated per plugin.

Environment variables:

* ``GEOVR_LOAD_PLUGINS=a,b``: load only these entry-point plugins (entry-point or distribution
  names); set but empty = no external plugins. Built-ins always load.
* ``GEOVR_BLOCK_PLUGINS=a,b``: never load these.
* ``GEOVR_STRICT_PLUGINS=1``: a broken plugin raises :class:`PluginLoadError` instead of warning.
* ``GEOVR_TRACE_PLUGINS=1``: print each plugin's load time and every hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
import time
import warnings
from typing import Any

import pluggy

from geovr import hookspecs
from geovr.errors import PluginLoadError
from geovr.registry import HOOK_KINDS, KINDS, Registry, make_register

ENTRY_POINT_GROUP = "geovr"
BUILTIN_PLUGINS = (
    "geovr.data.plugin",
    "geovr.objectives.plugin",
    "geovr.teachers.plugin",
    "geovr.train.plugin",
    "geovr.eval.plugin",
)
BUILTIN_DISTRIBUTION = "geovr"


class PluginWarning(UserWarning):
    """A plugin failed to load and was skipped."""


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()]


def _strict() -> bool:
    return os.environ.get("GEOVR_STRICT_PLUGINS", "").lower() in {"1", "true", "yes", "on"}


def _trace(msg: str) -> None:
    if os.environ.get("GEOVR_TRACE_PLUGINS", "").lower() in {"1", "true", "yes", "on"}:
        print(f"[geovr plugins] {msg}", file=sys.stderr)


class PluginHost:
    """Owns the pluggy manager, the registry and per-plugin metadata."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("geovr")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.meta: dict[str, dict[str, Any]] = {}  # plugin name -> {distribution, version, builtin}
        self.failures: list[PluginLoadError] = []

    # -- loading -------------------------------------------------------------------------------
    def load(self, *, builtins: bool = True, entry_points: bool = True) -> PluginHost:
        if builtins:
            from geovr import __version__

            for modname in BUILTIN_PLUGINS:
                self._add(
                    modname,
                    lambda m=modname: importlib.import_module(m),
                    BUILTIN_DISTRIBUTION,
                    __version__,
                    builtin=True,
                )
        if entry_points:
            allow, block = _env_list("GEOVR_LOAD_PLUGINS"), _env_list("GEOVR_BLOCK_PLUGINS") or []
            seen: set[tuple[str, str]] = set()
            for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = ep.dist.name if ep.dist is not None else "unknown"
                version = ep.dist.version if ep.dist is not None else "0"
                key = (dist.lower(), ep.name)
                if key in seen:  # the same distribution twice on sys.path
                    continue
                seen.add(key)
                names = {ep.name, dist}
                if allow is not None and not names & set(allow):
                    _trace(f"skip {ep.name} ({dist}): not in GEOVR_LOAD_PLUGINS")
                    continue
                if names & set(block):
                    _trace(f"skip {ep.name} ({dist}): in GEOVR_BLOCK_PLUGINS")
                    continue
                self._add(ep.name, ep.load, dist, version, builtin=False)
        return self

    def register_object(
        self, obj: Any, name: str, *, distribution: str | None = None, version: str = "0", builtin: bool = False
    ) -> None:
        """Register an already-imported plugin object (used by :mod:`geovr.testing`)."""
        self._add(name, lambda: obj, distribution or name, version, builtin=builtin)

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self.registry.remove_plugin(name)
        self.meta.pop(name, None)

    def _add(self, name: str, loader, distribution: str, version: str, *, builtin: bool) -> None:
        if self.pm.has_plugin(name):
            return
        t0 = time.perf_counter()
        try:
            obj = loader()
            self.pm.register(obj, name=name)
            self.meta[name] = {"distribution": distribution, "version": version, "builtin": builtin}
            self._check_hook_names(name)
            self._collect(name, obj, distribution)
        except (Exception, SystemExit) as exc:  # one broken plugin must not stop the others (sys.exit too)
            self.unregister(name)
            err = PluginLoadError(distribution, name, _exit_as_error(exc))
            self.failures.append(err)
            if _strict():
                raise err from exc
            warnings.warn(
                f"{err} (skipped; set GEOVR_STRICT_PLUGINS=1 to make this an error)", PluginWarning, stacklevel=2
            )
            return
        _trace(f"loaded {name} ({distribution} {version}) in {1e3 * (time.perf_counter() - t0):.1f} ms")

    def _check_hook_names(self, name: str) -> None:
        """Like ``pluggy``'s ``check_pending``, for plugin ``name``: every ``@hookimpl`` must name a geovr
        hook; all unknown names are reported together, each with the closest hook name."""
        import difflib

        known = sorted(n for n in vars(self.pm.hook) if not n.startswith("_") and getattr(self.pm.hook, n).has_spec())
        bad = []
        for hook_name in sorted(vars(self.pm.hook)):
            caller = getattr(self.pm.hook, hook_name)
            if hook_name.startswith("_") or caller.has_spec():
                continue
            if any(i.plugin_name == name and not i.optionalhook for i in caller.get_hookimpls()):
                close = difflib.get_close_matches(hook_name, known, n=1, cutoff=0.6)
                bad.append(f"{hook_name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        if bad:
            raise pluggy.PluginValidationError(
                self.pm.get_plugin(name),
                f"unknown hook{'s' if len(bad) > 1 else ''} {', '.join(bad)}: a @hookimpl function must be "
                f"named after a geovr hook ({', '.join(known)}; see docs/plugin-hooks.md)",
            )

    def _collect(self, name: str, obj: Any, distribution: str) -> None:
        """Call the registration hooks of one plugin with a register callback attributed to it."""
        for hook_name, kind in HOOK_KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != name:
                    continue
                _trace(f"{name}.{hook_name}()")
                impl.function(make_register(self.registry, kind, name, distribution))

    # -- introspection -------------------------------------------------------------------------
    def hooks_of(self, name: str) -> list[str]:
        plugin = self.pm.get_plugin(name)
        return sorted(h.name for h in (self.pm.get_hookcallers(plugin) or []))

    def plugin_infos(self, include_builtins: bool = False) -> list[dict[str, Any]]:
        """Sorted list of ``{name, distribution, version, builtin, hooks, components}``."""
        out = []
        for name, meta in sorted(self.meta.items()):
            if meta["builtin"] and not include_builtins:
                continue
            comps: dict[str, list[str]] = {}
            for spec in self.registry.specs():
                if spec.plugin == name:
                    comps.setdefault(spec.kind, []).append(spec.name)
            out.append(
                {
                    "name": name,
                    "distribution": meta["distribution"],
                    "version": meta["version"],
                    "builtin": meta["builtin"],
                    "hooks": self.hooks_of(name),
                    "components": {k: sorted(v) for k, v in sorted(comps.items(), key=lambda kv: KINDS.index(kv[0]))},
                }
            )
        return out

    def add_commands(self, subparsers) -> None:
        """Let every plugin add CLI verbs (errors are isolated like plugin loading)."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(subparsers)
            except (Exception, SystemExit) as exc:
                dist = self.meta.get(impl.plugin_name, {}).get("distribution", impl.plugin_name)
                err = PluginLoadError(dist, impl.plugin_name, _exit_as_error(exc))
                if _strict():
                    raise err from exc
                warnings.warn(f"{err} (commands skipped)", PluginWarning, stacklevel=2)


def _exit_as_error(exc: BaseException) -> BaseException:
    """A plugin calling ``sys.exit`` is reported as a broken plugin: ``SystemExit`` becomes a
    ``RuntimeError`` saying so (other exceptions are returned unchanged)."""
    if isinstance(exc, SystemExit):
        return RuntimeError(f"the plugin called sys.exit({exc.code!r}) while loading")
    return exc


_HOST: PluginHost | None = None


def load_plugins(*, reload: bool = False) -> PluginHost:
    """Load (once) and return the process-wide :class:`PluginHost`."""
    global _HOST
    if _HOST is None or reload:
        _HOST = PluginHost().load()
    return _HOST


def get_registry() -> Registry:
    """The registry of the process-wide plugin host (loading plugins on first use)."""
    return load_plugins().registry


def set_host(host: PluginHost | None) -> PluginHost | None:
    """Replace the process-wide host (tests); returns the previous one."""
    global _HOST
    old, _HOST = _HOST, host
    return old
