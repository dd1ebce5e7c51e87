"""The embedded synthetic 3-D video world: procedural rooms (:mod:`.scene`), egocentric cameras
(:mod:`.camera`), a vectorised torch ray caster (:mod:`.render`), exact measurements (:mod:`.measure`)
and VSI-Bench-style questions (:mod:`.qa`). Importing this package imports neither numpy nor torch
(the CLI registers ``geovr data synth`` from here at start-up); the names below load on first use."""

from __future__ import annotations

__all__ = ["Room", "Scene", "SceneObject", "generate_scene"]


def __getattr__(name: str):
    if name in __all__:
        from geovr.data.synthetic import scene

        return getattr(scene, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
