"""The contracts between components, and the records they exchange.

This module is torch-free at import time: tensors appear only in annotations. Shapes use
``B`` batch, ``S`` frames per video, ``H, W`` image pixels, ``h, w`` a token grid, ``D`` the student
hidden size, ``C`` a teacher feature width.

Component factories
-------------------
Every registered factory is called as ``factory(config, context)`` where ``config`` is the validated
attrs instance of the component's ``config`` class (or a plain ``dict`` when none was registered) and
``context`` is a :class:`BuildContext` holding what was built before it. Build order:
backbone → teacher → metric_teacher → objectives → datasets → trainer → evaluators → callbacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor

    from geovr.recipe.schema import Recipe

#: Names a teacher may list in ``provides`` and an objective in ``requires``.
TEACHER_OUTPUTS = frozenset(
    {"features", "depth", "depth_conf", "pose_enc", "intrinsics", "extrinsics", "points", "metric_depth"}
)


@attrs.frozen
class GeometryRequest:
    """What an objective needs the backbone to expose.

    ``layers``: hidden-state indices (HF ``hidden_states`` indexing, 0 = embeddings) whose visual
    tokens are returned as grids ``[B,S,h,w,D]``. ``camera_tokens``: insert one camera token after each
    frame's visual tokens. ``scale_token``: insert one scale token after the whole video.
    """

    layers: tuple[int, ...] = attrs.field(default=(), converter=lambda v: tuple(sorted(set(int(x) for x in v))))
    camera_tokens: bool = False
    scale_token: bool = False

    def merge(self, other: GeometryRequest) -> GeometryRequest:
        """Union of two requests."""
        return GeometryRequest(
            layers=self.layers + other.layers,
            camera_tokens=self.camera_tokens or other.camera_tokens,
            scale_token=self.scale_token or other.scale_token,
        )

    @property
    def empty(self) -> bool:
        """True when nothing is requested: the backbone must then behave exactly like the HF model."""
        return not (self.layers or self.inserts_tokens)

    @property
    def inserts_tokens(self) -> bool:
        """True when camera tokens or the scale token are inserted into the sequence."""
        return self.camera_tokens or self.scale_token

    def without_tokens(self) -> GeometryRequest:
        """The same request laid out as inference sees the sequence: no camera or scale tokens."""
        return attrs.evolve(self, camera_tokens=False, scale_token=False)

    @classmethod
    def union(cls, requests) -> GeometryRequest:
        out = cls()
        for r in requests:
            out = out.merge(r)
        return out


@attrs.define
class Batch:
    """A collated training/eval batch (see :func:`geovr.data.collate`).

    frames: ``[B,S,3,H,W]`` float32 in [0,1]. frame_indices: ``[B,S]`` int64 (index in the source video).
    frame_times: ``[B,S]`` float32 seconds of each sampled frame in its video (from the container's
    timestamps, or the dataset's own frame rate); ``None`` when the data has no timing.

    Ragged batches: samples may differ in frame count and frame size. The tensors are then padded
    (frames at the end, pixels at the bottom/right, with zeros) to the largest ``S``, ``H``, ``W`` and
    ``frame_counts`` ``[B]`` int64 / ``image_sizes`` ``[B,2]`` int64 ``(H_i, W_i)`` give each sample's
    valid part (both ``None`` when every sample has the full size). :meth:`sample` returns sample ``i``
    as an unpadded batch of one (``[1,S_i,3,H_i,W_i]``); :meth:`split` all of them.
    questions/answers: ``B`` strings (answer ``""`` when unknown). options: per sample a list of option
    strings (``["A. chair", ...]``) or ``None`` for numerical questions. Backbones render a question
    verbatim and, when options are given, list them one per line after it; an evaluator that builds a
    complete protocol prompt passes it as the question with ``options=None``. Ground truth (``None`` when the
    data has none): depth ``[B,S,H,W]`` metres, intrinsics ``[B,S,3,3]`` (pixels, OpenCV), extrinsics
    ``[B,S,3,4]`` world-to-camera (OpenCV). pixel_keys: ``B`` strings naming what determines each sample's
    frames (see :mod:`geovr.data.collate`; empty when the data does not declare it): the teacher cache keys
    entries by it, so questions on the same video and frames share one entry.

    Conversations (multi-turn data): ``conversations`` is ``None`` or per sample ``None`` / a list of turns
    ``{"role": "user" | "assistant", "text": str}`` (the video belongs to the first user turn); backbones
    then render every turn and put labels on every assistant turn (``questions``/``answers`` still hold
    the first exchange). ``sources``: per sample the name of the data source it came from (``""`` when
    unknown); ``skipped``: ``{"<source>/<reason>": n}`` bad records replaced while building the batch.
    """

    frames: Tensor
    sample_ids: list[str]
    questions: list[str]
    answers: list[str]
    options: list[list[str] | None] = attrs.field(factory=list)
    question_types: list[str] = attrs.field(factory=list)
    scene_ids: list[str] = attrs.field(factory=list)
    frame_indices: Tensor | None = None
    depth: Tensor | None = None
    intrinsics: Tensor | None = None
    extrinsics: Tensor | None = None
    frame_times: Tensor | None = None
    frame_counts: Tensor | None = None
    image_sizes: Tensor | None = None
    pixel_keys: list[str] = attrs.field(factory=list)
    conversations: list[list[dict] | None] | None = None
    sources: list[str] = attrs.field(factory=list)
    skipped: dict[str, int] = attrs.field(factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_frames(self) -> int:
        """``S`` of the (padded) frames tensor; see :meth:`frames_of` for a sample's own count."""
        return int(self.frames.shape[1])

    @property
    def ragged(self) -> bool:
        """True when samples differ in frame count or frame size (see the class docstring)."""
        return self.frame_counts is not None or self.image_sizes is not None

    def frames_of(self, i: int) -> int:
        """Valid frame count ``S_i`` of sample ``i``."""
        return int(self.frame_counts[i]) if self.frame_counts is not None else self.num_frames

    def size_of(self, i: int) -> tuple[int, int]:
        """Valid frame size ``(H_i, W_i)`` of sample ``i``."""
        if self.image_sizes is not None:
            return int(self.image_sizes[i, 0]), int(self.image_sizes[i, 1])
        return int(self.frames.shape[-2]), int(self.frames.shape[-1])

    def sample(self, i: int) -> Batch:
        """Sample ``i`` as an unpadded batch of one: frames ``[1,S_i,3,H_i,W_i]``, depth
        ``[1,S_i,H_i,W_i]``, per-frame tensors ``[1,S_i,...]`` (``frame_counts``/``image_sizes`` ``None``)."""
        n = self.frames_of(i)
        h, w = self.size_of(i)

        def cut(t, pixels: bool = False):
            if t is None:
                return None
            t = t[i : i + 1, :n]
            return t[..., :h, :w] if pixels else t

        def pick(items):
            return list(items[i : i + 1]) if len(items) > i else []

        return Batch(
            frames=cut(self.frames, True),
            sample_ids=pick(self.sample_ids),
            questions=pick(self.questions),
            answers=pick(self.answers),
            options=pick(self.options),
            question_types=pick(self.question_types),
            scene_ids=pick(self.scene_ids),
            frame_indices=cut(self.frame_indices),
            depth=cut(self.depth, True),
            intrinsics=cut(self.intrinsics),
            extrinsics=cut(self.extrinsics),
            frame_times=cut(self.frame_times),
            pixel_keys=pick(self.pixel_keys),
            conversations=None if self.conversations is None else pick(self.conversations),
            sources=pick(self.sources),
        )

    def split(self) -> list[Batch]:
        """Every sample as an unpadded batch of one (see :meth:`sample`)."""
        return [self.sample(i) for i in range(self.batch_size)]

    def to(self, device) -> Batch:
        """Move every tensor field to ``device`` (returns a new Batch)."""
        changes = {
            f.name: getattr(self, f.name).to(device)
            for f in attrs.fields(type(self))
            if hasattr(getattr(self, f.name), "to") and not isinstance(getattr(self, f.name), (str, list))
        }
        return attrs.evolve(self, **changes)


@attrs.define
class StudentOutput:
    """What a backbone returns.

    lm_loss: scalar (mean token cross-entropy over labelled tokens) or ``None`` without labels.
    logits: ``[B,T,V]`` or ``None``. hidden: ``{layer: [B,S,h,w,D]}`` visual-token grids for the
    requested layers. camera: ``[B,S,D]`` last-layer camera-token states (``None`` unless requested).
    scale: ``[B,D]`` last-layer scale-token state (``None`` unless requested).

    Ragged batches (:attr:`Batch.ragged`): ``hidden`` values and ``camera`` are lists of ``B`` per-sample
    tensors ``[S_i,h_i,w_i,D]`` / ``[S_i,D]`` instead; :meth:`sample` gives sample ``i`` in the regular
    form with ``B = 1``.
    """

    lm_loss: Tensor | None = None
    logits: Tensor | None = None
    hidden: dict[int, Tensor] = attrs.field(factory=dict)
    camera: Tensor | None = None
    scale: Tensor | None = None

    @property
    def ragged(self) -> bool:
        """True when ``hidden``/``camera`` hold per-sample lists (see the class docstring)."""
        return isinstance(self.camera, list) or any(isinstance(v, list) for v in self.hidden.values())

    def sample(self, i: int) -> StudentOutput:
        """Sample ``i`` with a batch dimension of one (``hidden {layer: [1,S_i,h_i,w_i,D]}``, ``camera
        [1,S_i,D]``, ``scale [1,D]``); ``lm_loss``/``logits`` are not split (``None``)."""
        return StudentOutput(
            hidden={k: _row(v, i) for k, v in self.hidden.items()},
            camera=_row(self.camera, i),
            scale=_row(self.scale, i),
        )


def _row(value, i: int):
    """Sample ``i`` of a batched tensor (``[1,...]``) or of a per-sample list (``[1,...]``)."""
    if value is None:
        return None
    if isinstance(value, list):
        return value[i].unsqueeze(0)
    return value[i : i + 1]


@attrs.define
class TeacherOutput:
    """What a teacher returns (fields outside its ``provides`` stay ``None``).

    features: ``{layer: [B,S,h,w,C]}``; depth, depth_conf, metric_depth: ``[B,S,H,W]`` at the teacher's
    working resolution; pose_enc: ``[B,S,9]`` = translation(3), quaternion xyzw (4, w>=0), fov_h, fov_w
    (first camera = identity); intrinsics ``[B,S,3,3]``; extrinsics ``[B,S,3,4]`` world-to-camera;
    points ``[B,S,H,W,3]`` in the first camera's frame; metric_scale ``[B]`` factor turning this
    teacher's depth into metres (when known exactly, e.g. the oracle).

    Ragged batches: each sample is encoded on its own (:meth:`Batch.split`) and every field holds a list
    of ``B`` per-sample tensors without the batch dimension (``depth [S_i,H'_i,W'_i]``, ``features
    {layer: [S_i,h_i,w_i,C]}``, …); :meth:`stack_samples` builds that form and :meth:`sample` returns
    sample ``i`` in the regular form with ``B = 1``.
    """

    features: dict[int, Tensor] = attrs.field(factory=dict)
    depth: Tensor | None = None
    depth_conf: Tensor | None = None
    pose_enc: Tensor | None = None
    intrinsics: Tensor | None = None
    extrinsics: Tensor | None = None
    points: Tensor | None = None
    metric_depth: Tensor | None = None
    metric_scale: Tensor | None = None

    def tensors(self) -> dict[str, Tensor]:
        """Flat ``{name: tensor}`` view (features as ``features.<layer>``), e.g. for caching."""
        out: dict[str, Any] = {f"features.{k}": v for k, v in self.features.items()}
        for f in attrs.fields(type(self)):
            v = getattr(self, f.name)
            if f.name != "features" and v is not None:
                out[f.name] = v
        return out

    @classmethod
    def from_tensors(cls, flat: Mapping[str, Any]) -> TeacherOutput:
        """Inverse of :meth:`tensors` (values are ``[B,...]`` tensors, or per-sample lists for ragged outputs)."""
        feats = {int(k.split(".", 1)[1]): v for k, v in flat.items() if k.startswith("features.")}
        rest = {k: v for k, v in flat.items() if not k.startswith("features.")}
        return cls(features=feats, **rest)

    @property
    def ragged(self) -> bool:
        """True when the fields hold per-sample lists (see the class docstring)."""
        return any(isinstance(v, list) for v in self.tensors().values())

    def sample(self, i: int) -> TeacherOutput:
        """Sample ``i`` with a batch dimension of one (works for both forms)."""
        return TeacherOutput.from_tensors({k: _row(v, i) for k, v in self.tensors().items()})

    @classmethod
    def stack_samples(cls, outputs: list[TeacherOutput]) -> TeacherOutput:
        """Per-sample outputs (each with ``B = 1``) → one ragged output holding lists of ``[...]``
        tensors without the batch dimension (fields missing from any sample are dropped)."""
        flats = [o.tensors() for o in outputs]
        keys = [k for k in flats[0] if all(k in f for f in flats)]
        return cls.from_tensors({k: [f[k][0] for f in flats] for k in keys})


@attrs.define
class ObjectiveOutput:
    """loss: differentiable scalar tensor (unweighted); metrics: ``{name: float}`` for logging."""

    loss: Tensor
    metrics: dict[str, float] = attrs.field(factory=dict)


@attrs.define
class BuildContext:
    """Passed to every factory as its second argument: what has been built so far.

    recipe: the validated :class:`geovr.recipe.schema.Recipe` (or ``None`` outside a recipe);
    device: a torch device string; output_dir: the run directory (may not exist yet); seed: the recipe's
    seed. backbone, teacher, metric_teacher, objectives, datasets (by split): the built components, in
    build order (:data:`geovr.recipe.build.STAGES`). trainer: the built :class:`Trainer` (``None`` when the
    recipe has none or the stage was not built); evaluators: the built :class:`Evaluator` objects, in
    recipe order; callbacks: the built training callbacks (objects with any of ``on_train_start(state)``,
    ``on_step_end(state)``, ``on_train_end(state)``), in recipe order.
    """

    recipe: Recipe | None = None
    device: str = "cpu"
    output_dir: str | None = None
    seed: int = 0
    backbone: Any = None
    teacher: Any = None
    metric_teacher: Any = None
    objectives: list[Any] = attrs.field(factory=list)
    datasets: dict[str, Any] = attrs.field(factory=dict)
    trainer: Trainer | None = None
    evaluators: list[Evaluator] = attrs.field(factory=list)
    callbacks: list[Any] = attrs.field(factory=list)


@runtime_checkable
class Trainer(Protocol):
    """Trains the context's backbone and objectives (``[trainer]``)."""

    def fit(self, context: BuildContext) -> dict[str, float]:
        """Train; returns the final metrics (numbers) and ``steps``."""


@runtime_checkable
class Evaluator(Protocol):
    """A benchmark run on a backbone (``[[evaluators]]``)."""

    def evaluate(self, backbone: Any, output_dir: Any) -> dict[str, float]:
        """Evaluate ``backbone``, writing reports under ``output_dir``; returns the headline scores."""


@runtime_checkable
class Backbone(Protocol):
    """The student MLLM (an ``nn.Module``; trainable).

    ``num_layers``: LLM decoder layers (hidden-state indices run 0..num_layers); ``hidden_size``: D.
    """

    num_layers: int
    hidden_size: int

    def prepare(self, batch: Batch, *, with_answers: bool = True) -> dict:
        """Turn a :class:`Batch` into model inputs (token ids, labels ``-100`` except answer tokens,
        pixel values, grid sizes). With ``with_answers=False`` builds a generation prompt."""

    def forward(self, inputs: dict, *, geometry: GeometryRequest) -> StudentOutput:
        """Run the model. With ``geometry.empty`` the result equals the plain HF model's."""

    def generate(self, batch: Batch, **generation_kwargs) -> list[str]:
        """Decode answers for ``batch`` (no geometry tokens, no heads); one string per sample."""

    def parameter_groups(self) -> dict[str, list]:
        """Trainable parameters by group: ``"base"`` (LLM/merger/LoRA) and ``"new"`` (geometry tokens)."""

    def save_pretrained(self, path: str) -> None:
        """Write a plain transformers model directory (LoRA merged, no geometry tokens) + processor."""


@runtime_checkable
class Teacher(Protocol):
    """A frozen 3D foundation model. ``provides`` ⊆ :data:`TEACHER_OUTPUTS`; ``num_layers`` = its
    transformer depth; ``feature_dim`` = C of ``features``; ``layers`` = default feature layers."""

    provides: frozenset[str]
    num_layers: int
    feature_dim: int
    layers: tuple[int, ...]

    def encode(self, frames: torch.Tensor, layers=None, *, batch: Batch | None = None) -> TeacherOutput:
        """frames ``[B,S,3,H,W]`` in [0,1] → :class:`TeacherOutput`, under ``torch.no_grad()``.
        ``batch`` gives oracle-style teachers access to ground truth; neural teachers ignore it."""

    def cache_key(self) -> str:
        """Stable digest of weights + preprocessing + options: equal keys ⇒ equal outputs."""


@runtime_checkable
class Objective(Protocol):
    """A geometric objective: an ``nn.Module`` owning its head.

    ``name``: label used in logs; ``weight``: its factor in the total loss; ``requires`` ⊆ teacher
    outputs; ``student_needs``: the :class:`GeometryRequest` it needs from the backbone.
    """

    name: str
    weight: float
    requires: frozenset[str]
    student_needs: GeometryRequest

    def forward(self, student: StudentOutput, teacher: TeacherOutput, batch: Batch) -> ObjectiveOutput:
        """Compute the (unweighted) loss and metrics."""
