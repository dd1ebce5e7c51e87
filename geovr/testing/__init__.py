"""Helpers shipped for plugin authors' tests.

* :func:`registered` — register a plugin object for the duration of a ``with`` block;
* :mod:`geovr.testing.contracts` — ``check_backbone``, ``check_teacher``, ``check_objective``;
* :mod:`geovr.testing.tiny` — tiny real torch test doubles (backbone, teachers, objectives, videos) that
  exercise the training engine in seconds on a CPU (imports torch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from geovr.plugins import PluginHost, set_host


@contextlib.contextmanager
def registered(
    plugin: object, name: str | None = None, *, distribution: str | None = None, isolated: bool = False
) -> Iterator[PluginHost]:
    """Temporarily add ``plugin`` (a module or object with ``@hookimpl`` functions).

    With ``isolated=True`` the host contains only the built-ins and ``plugin`` (no entry points).
    The previous process-wide host is restored on exit. Yields the active :class:`PluginHost`.
    """
    name = name or getattr(plugin, "__name__", None) or f"test-plugin-{id(plugin)}"
    if isolated:
        host = PluginHost().load(entry_points=False)
    else:
        host = PluginHost().load()
    host.register_object(plugin, name, distribution=distribution or name)
    old = set_host(host)
    try:
        yield host
    finally:
        set_host(old)
        del old
