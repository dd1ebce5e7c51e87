"""geovr: teach video MLLMs 3D geometry from frozen 3D foundation models.

Public API (torch-free at import)::

    from geovr import hookimpl, load_plugins, get_registry, load_recipe, build
"""

from __future__ import annotations

__version__ = "0.1.0"

from geovr.errors import (  # noqa: E402
    CheckpointError,
    DataError,
    DuplicateComponentError,
    GeovrError,
    PluginLoadError,
    RecipeError,
    UnknownComponentError,
    UsageError,
)
from geovr.hookspecs import hookimpl  # noqa: E402  (defined beside the hook specifications)
from geovr.plugins import get_registry, load_plugins  # noqa: E402
from geovr.recipe import build, load_recipe  # noqa: E402

__all__ = [
    "__version__",
    "hookimpl",
    "load_plugins",
    "get_registry",
    "load_recipe",
    "build",
    "GeovrError",
    "RecipeError",
    "UnknownComponentError",
    "DuplicateComponentError",
    "PluginLoadError",
    "CheckpointError",
    "DataError",
    "UsageError",
]
