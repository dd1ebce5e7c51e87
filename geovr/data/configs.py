"""Config classes of the data components and the oracle teacher (torch-free; validated by recipes).

Field defaults are the recipe defaults; ``check()`` returns cross-field problems as strings.
"""

from __future__ import annotations

from typing import Literal

import attrs

from geovr.recipe.preflight import missing_path

#: The VSI-Bench question types the synthetic world generates (see :mod:`geovr.data.synthetic.qa`).
QUESTION_TYPES = (
    "object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation",
    "object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium",
    "object_rel_direction_hard", "route_planning", "obj_appearance_order",
)
TRAJECTORIES = ("walk", "orbit", "pan")
TEACHER_OUTPUTS_ALL = frozenset(
    {"features", "depth", "depth_conf", "pose_enc", "intrinsics", "extrinsics", "points", "metric_depth"})


def _size_problems(name: str, size) -> list[str]:
    if size is None:
        return []
    if len(size) != 2 or any(int(s) < 2 for s in size):
        return [f"{name} must be [H, W] with H, W >= 2, got {list(size)}"]
    return []


@attrs.define
class SyntheticRoomsConfig:
    """``synthetic_rooms``: procedural rooms rendered on the fly; sample ``i`` is deterministic in
    ``(seed, i)``. ``image_size`` is ``[H, W]``; ``num_objects`` an inclusive ``[min, max]`` range;
    ``trajectory`` one of walk/orbit/pan or ``None`` (random per scene); ``with_geometry`` adds GT
    depth/intrinsics/extrinsics to every sample; ``compile_renderer`` renders through
    ``torch.compile`` (faster for long runs, ~30 s compile on first use). ``questions_per_scene``:
    consecutive samples share a scene and ask its different questions (fewer scenes to render per
    sample). ``cache``: keep rendered scenes on disk, keyed by these options
    (:mod:`geovr.data.synthetic.cache`; ``cache_dir`` default ``$GEOVR_CACHE_DIR/scenes``), so every
    run asking for the same scene renders it once. ``prompt``: ``"lmms-eval"`` or ``"geovr"`` turns each
    question into that evaluation protocol's full prompt text (options folded in, ``options = None``),
    so a student trains on the text it is evaluated with; ``None`` keeps question and options apart."""

    num_samples: int = 64
    num_frames: int = 8
    image_size: list[int] = attrs.field(factory=lambda: [224, 224])
    seed: int = 0
    question_types: list[str] = attrs.field(factory=lambda: list(QUESTION_TYPES))
    num_objects: list[int] = attrs.field(factory=lambda: [8, 24])
    trajectory: str | None = None
    with_geometry: bool = True
    compile_renderer: bool = False
    questions_per_scene: int = 1
    prompt: Literal["lmms-eval", "geovr"] | None = None
    cache: bool = True
    cache_dir: str | None = None

    def check(self) -> list[str]:
        problems = _size_problems("image_size", self.image_size)
        if self.questions_per_scene < 1:
            problems.append(f"questions_per_scene must be >= 1, got {self.questions_per_scene}")
        if self.num_samples < 1:
            problems.append(f"num_samples must be >= 1, got {self.num_samples}")
        if self.num_frames < 1:
            problems.append(f"num_frames must be >= 1, got {self.num_frames}")
        bad = sorted(set(self.question_types) - set(QUESTION_TYPES))
        if bad or not self.question_types:
            problems.append(f"question_types {bad or '[]'} invalid; choose from {list(QUESTION_TYPES)}")
        if len(self.num_objects) != 2 or not 1 <= self.num_objects[0] <= self.num_objects[1] <= 30:
            problems.append(f"num_objects must be [min, max] with 1 <= min <= max <= 30, got {self.num_objects}")
        if self.trajectory is not None and self.trajectory not in TRAJECTORIES:
            problems.append(f"trajectory must be one of {list(TRAJECTORIES)} or omitted, got {self.trajectory!r}")
        return problems


@attrs.define
class VideoQAConfig:
    """``video_qa``: VSI-format jsonl ``annotations`` + videos under ``video_root`` (``<scene>.mp4`` or
    ``<dataset>/<scene>.mp4``); ``num_frames`` sampled uniformly; optional ``image_size [H, W]``
    resize; optional ``geometry_root`` with ``<scene>.safetensors`` (depth, intrinsics, extrinsics)."""

    annotations: str
    video_root: str
    num_frames: int = 8
    image_size: list[int] | None = None
    geometry_root: str | None = None
    question_types: list[str] | None = None
    limit: int | None = None

    def preflight(self) -> list[str]:
        """The annotation file and video directory must exist on this machine."""
        return (missing_path(self.annotations, "annotations", kind="file")
                + missing_path(self.video_root, "video_root", kind="dir")
                + missing_path(self.geometry_root, "geometry_root", kind="dir"))

    def check(self) -> list[str]:
        problems = _size_problems("image_size", self.image_size)
        if self.num_frames < 1:
            problems.append(f"num_frames must be >= 1, got {self.num_frames}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be >= 1, got {self.limit}")
        return problems


@attrs.define
class OracleTeacherConfig:
    """``oracle``: a teacher backed by the batch's exact ground truth. Features are Fourier features
    of per-patch 3-D points (``feature_dim`` channels, frequencies rising with the layer index over
    ``num_layers`` virtual layers); ``layers`` are the default feature layers; ``patch_size`` the
    patch side in pixels."""

    feature_dim: int = 64
    num_layers: int = 24
    layers: list[int] = attrs.field(factory=lambda: [4, 11, 17, 23])
    patch_size: int = 14

    def provides(self) -> frozenset[str]:
        """Everything: features, depth, depth_conf, pose_enc, intrinsics, extrinsics, points, metric_depth."""
        return TEACHER_OUTPUTS_ALL

    def check(self) -> list[str]:
        problems = []
        if self.feature_dim < 2 or self.feature_dim % 2:
            problems.append(f"feature_dim must be an even number >= 2, got {self.feature_dim}")
        if self.num_layers < 1:
            problems.append(f"num_layers must be >= 1, got {self.num_layers}")
        bad = [layer for layer in self.layers if not 0 <= layer < self.num_layers]
        if bad:
            problems.append(f"layers {bad} outside 0..{self.num_layers - 1}")
        if self.patch_size < 1:
            problems.append(f"patch_size must be >= 1, got {self.patch_size}")
        return problems
