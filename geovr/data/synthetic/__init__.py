"""The embedded synthetic 3-D video world: procedural rooms (:mod:`.scene`), egocentric cameras
(:mod:`.camera`), a vectorised torch ray caster (:mod:`.render`), exact measurements (:mod:`.measure`)
and VSI-Bench-style questions (:mod:`.qa`). Importing this package does not import torch; the
renderer and the dataset (:mod:`.dataset`) do."""

from geovr.data.synthetic.scene import Room, Scene, SceneObject, generate_scene

__all__ = ["Room", "Scene", "SceneObject", "generate_scene"]
