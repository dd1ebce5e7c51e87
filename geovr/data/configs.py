"""Config classes of the data components and the oracle teacher (torch-free; validated by recipes).

Field defaults are the recipe defaults; ``check()`` returns cross-field problems as strings.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from geovr.recipe.preflight import missing_path

#: The VSI-Bench question types the synthetic world generates (see :mod:`geovr.data.synthetic.qa`).
QUESTION_TYPES = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "route_planning",
    "obj_appearance_order",
)
TRAJECTORIES = ("walk", "orbit", "pan")
#: Wall paintings of ``synthetic_rooms`` (see :func:`geovr.data.synthetic.scene.generate_scene`).
WALLS = ("uniform", "compass")
TEACHER_OUTPUTS_ALL = frozenset(
    {"features", "depth", "depth_conf", "pose_enc", "intrinsics", "extrinsics", "points", "metric_depth"}
)


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
    so a student trains on the text it is evaluated with; ``None`` keeps question and options apart.
    ``span`` (0 < span ≤ 1): the fraction of the scene's camera path the ``num_frames`` views cover,
    from its start (1 = the whole walk/orbit/pan; smaller = a short excerpt with overlapping views).
    ``walls``: ``"uniform"`` (every wall in the room's colour) or ``"compass"`` (each of the four walls in
    its own hue, the same in every room, so one view shows which way the camera faces)."""

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
    span: float = 1.0
    walls: Literal["uniform", "compass"] = "uniform"

    def check(self) -> list[str]:
        problems = _size_problems("image_size", self.image_size)
        if self.walls not in WALLS:
            problems.append(f"walls must be one of {list(WALLS)}, got {self.walls!r}")
        if not (isinstance(self.span, (int, float)) and 0 < self.span <= 1):
            problems.append(f"span must be a number in (0, 1], got {self.span!r}")
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
        return (
            missing_path(self.annotations, "annotations", kind="file")
            + missing_path(self.video_root, "video_root", kind="dir")
            + missing_path(self.geometry_root, "geometry_root", kind="dir")
        )

    def check(self) -> list[str]:
        problems = _size_problems("image_size", self.image_size)
        if self.num_frames < 1:
            problems.append(f"num_frames must be >= 1, got {self.num_frames}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be >= 1, got {self.limit}")
        return problems


#: Keys a ``[[data.train.sources]]`` table of ``video_conversations`` may set.
SOURCE_KEYS = ("name", "weight", "annotations", "shards", "video_root", "video_only", "limit", "data_source_dirs")


@attrs.define
class ConversationSource:
    """One source of a ``video_conversations`` mixture: ``annotations`` (JSON array or JSONL file(s)) with
    videos under ``video_root``, or ``shards`` (tar paths/globs holding ``<key>.json`` + ``<key>.mp4``).
    ``weight`` scales how many of its records an epoch draws (1 = each once, 0.5 = half, 2 = twice);
    ``name`` labels it in the run log (default: the file name); ``video_only``/``limit`` override the
    dataset's; ``data_source_dirs`` renames the folder of records located by ``data_source`` +
    ``scene_name`` (VLM-3R: ``{scannetpp = "scannetppv2"}``)."""

    name: str
    weight: float = 1.0
    annotations: str | list[str] | None = None
    shards: str | list[str] | None = None
    video_root: str | None = None
    video_only: bool | None = None
    limit: int | None = None
    data_source_dirs: dict[str, str] | None = None

    def check(self) -> list[str]:
        where = f"source {self.name!r}"
        problems = []
        if (self.annotations is None) == (self.shards is None):
            problems.append(f"{where}: give exactly one of annotations (JSON/JSONL) or shards (tar files)")
        if self.annotations is not None and self.video_root is None:
            problems.append(f"{where}: annotations need a video_root (the folder the records' video paths are under)")
        if not self.weight > 0:
            problems.append(f"{where}: weight must be > 0, got {self.weight}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"{where}: limit must be >= 1, got {self.limit}")
        return problems

    def preflight(self) -> list[str]:
        files = [self.annotations] if isinstance(self.annotations, str) else list(self.annotations or [])
        problems = [p for f in files for p in missing_path(f, f"{self.name}.annotations", kind="file")]
        problems += missing_path(self.video_root, f"{self.name}.video_root", kind="dir")
        if self.shards is not None:
            from geovr.data.shards import expand_shards
            from geovr.errors import DataError

            try:
                expand_shards(self.shards)
            except DataError as exc:
                problems.append(f"{self.name}.{exc}")
        return problems


def _source_name(value) -> str:
    first = value if isinstance(value, str) else (list(value) or ["source"])[0]
    name = first.rstrip("/").split("/")[-1]
    for suffix in (".jsonl", ".json", ".tar"):
        name = name.removesuffix(suffix)
    return name.replace("*", "").replace("{", "").replace("}", "") or "source"


@attrs.define
class VideoConversationsConfig:
    """``video_conversations``: LLaVA-style conversation records (``{"id", "video" | "image",
    "conversations": [{"from": "human" | "gpt", "value"}, ...]}``, as VSI-590K and VLM-3R ship them).

    One source is given inline (``annotations`` + ``video_root``, or ``shards``); a mixture lists
    ``sources`` tables (see :class:`ConversationSource`), interleaved by the trainer's seeded order.
    Frames: ``fps`` per second of video, ``min_frames``..``max_frames`` (the released 2, 4, 32), read
    with seeking (``seek``); optional ``image_size [H, W]`` resize (else frames keep the video's size).
    ``video_only`` skips image records (else they become one-frame samples). ``on_error``: ``"skip"``
    replaces a bad record by the next good one and counts it by reason (the run stops once more than
    ``max_skip_fraction`` of the records are bad), ``"raise"`` stops at the first, naming ``file:line`` or
    ``shard:key``; evaluation data always raises. ``limit`` keeps the first records of each source."""

    annotations: str | list[str] | None = None
    video_root: str | None = None
    shards: str | list[str] | None = None
    name: str | None = None
    sources: list[dict[str, Any]] | None = None
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 32
    image_size: list[int] | None = None
    video_only: bool = True
    seek: bool = True
    on_error: Literal["skip", "raise"] = "skip"
    max_skip_fraction: float = 0.01
    limit: int | None = None

    def source_list(self) -> list[ConversationSource]:
        """The sources as :class:`ConversationSource` (the inline one, or each ``sources`` table)."""
        if not self.sources:
            name = self.name or _source_name(self.annotations or self.shards or "source")
            return [
                ConversationSource(
                    name=name,
                    annotations=self.annotations,
                    shards=self.shards,
                    video_root=self.video_root,
                    limit=self.limit,
                )
            ]
        out = []
        for i, table in enumerate(self.sources):
            table = dict(table)
            table.setdefault("name", _source_name(table.get("annotations") or table.get("shards") or f"source{i}"))
            table.setdefault("limit", self.limit)
            if table.get("video_root") is None:
                table["video_root"] = self.video_root
            out.append(ConversationSource(**{k: v for k, v in table.items() if k in SOURCE_KEYS}))
        return out

    def _source_problems(self) -> list[str]:
        problems = []
        types: dict[str, type | tuple[type, ...]] = {
            "name": str,
            "weight": (int, float),
            "annotations": (str, list),
            "shards": (str, list),
            "video_root": str,
            "video_only": bool,
            "limit": int,
            "data_source_dirs": dict,
        }
        for i, table in enumerate(self.sources or []):
            for key, value in table.items():
                if key not in SOURCE_KEYS:
                    problems.append(f"sources.{i}: unknown option {key!r} (valid: {', '.join(SOURCE_KEYS)})")
                elif value is not None and (
                    not isinstance(value, types[key]) or isinstance(value, bool) and key in ("weight", "limit")
                ):
                    problems.append(f"sources.{i}.{key}: expected {types[key]}, got {value!r}")
        return problems

    def check(self) -> list[str]:
        problems = _size_problems("image_size", self.image_size)
        if self.sources and (self.annotations or self.shards):
            problems.append("give either sources = [...] or one inline source (annotations/shards), not both")
        problems += self._source_problems()
        if not problems:
            names = []
            for src in self.source_list():
                problems += src.check()
                names.append(src.name)
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                problems.append(f"source names must be unique, repeated: {dup}")
        if not 0 < self.fps:
            problems.append(f"fps must be > 0, got {self.fps}")
        if not 1 <= self.min_frames <= self.max_frames:
            problems.append(f"need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if not 0 <= self.max_skip_fraction <= 1:
            problems.append(f"max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be >= 1, got {self.limit}")
        return problems

    def preflight(self) -> list[str]:
        """Every source's annotation files, video folders and shard patterns must exist here."""
        if self.check():
            return []
        return [p for src in self.source_list() for p in src.preflight()]


@attrs.define
class OracleTeacherConfig:
    """``oracle``: a teacher backed by the batch's exact ground truth. Features are Fourier features
    of per-patch 3-D points (``feature_dim`` channels, frequencies rising with the layer index over
    ``num_layers`` virtual layers); ``layers`` are the default feature layers; ``patch_size`` the
    patch side in pixels; ``feature_scale`` multiplies every layer's frequencies (below 1: smoother
    features, which a small student can learn to predict; 1 = the default spectrum)."""

    feature_dim: int = 64
    num_layers: int = 24
    layers: list[int] = attrs.field(factory=lambda: [4, 11, 17, 23])
    patch_size: int = 14
    feature_scale: float = 1.0

    def provides(self) -> frozenset[str]:
        """Everything: features, depth, depth_conf, pose_enc, intrinsics, extrinsics, points, metric_depth."""
        return TEACHER_OUTPUTS_ALL

    def cache_layout(self, frames: int, height: int, width: int, layers=()):
        """Every output at the frames' resolution, features on the ``patch_size`` grid; no network, no
        FLOPs (sizing interface, :mod:`geovr.sizing`)."""
        from geovr.sizing import CacheLayout

        S, H, W, p = frames, height, width, self.patch_size
        shapes: dict[str, tuple[int, ...]] = {
            f"features.{layer}": (S, H // p, W // p, self.feature_dim) for layer in layers
        }
        shapes.update(
            depth=(S, H, W),
            depth_conf=(S, H, W),
            points=(S, H, W, 3),
            pose_enc=(S, 9),
            intrinsics=(S, 3, 3),
            extrinsics=(S, 3, 4),
            metric_depth=(S, H, W),
            metric_scale=(),
        )
        return CacheLayout(shapes, 0.0, "oracle (ground truth, no network)")

    def build_meta(self):
        """No network: no parameters; ``num_layers`` virtual layers of ``feature_dim`` channels."""
        from geovr.sizing import TeacherMeta

        return TeacherMeta(module=None, num_layers=self.num_layers, feature_dim=self.feature_dim)

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
        if not (
            isinstance(self.feature_scale, (int, float))
            and math.isfinite(self.feature_scale)
            and self.feature_scale > 0
        ):
            problems.append(f"feature_scale must be a finite number > 0, got {self.feature_scale!r}")
        return problems
