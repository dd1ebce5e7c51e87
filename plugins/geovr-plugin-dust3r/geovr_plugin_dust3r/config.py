"""Recipe options of the ``dust3r`` teacher (torch-free: imported when recipes are validated).

Option names follow the ``vggt`` teacher where they mean the same thing (``pretrained``,
``model_config``, ``image_size``, ``dtype``, ``layers``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import attrs

from geovr.recipe.preflight import checkpoint_source
from geovr_plugin_dust3r.arch import PRESETS, DUSt3RArch

#: Hugging Face id of the official checkpoint.
OFFICIAL_CHECKPOINT = "naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt"
PROVIDES = frozenset({"features", "depth", "depth_conf", "pose_enc", "intrinsics", "extrinsics", "points"})

#: Pair graphs of the global alignment: ``"complete"`` (every ordered pair), ``"swin-K"`` (each frame with
#: its next K frames, wrapping around to the start as DUSt3R's sliding window does), ``"swin-K-noncyclic"``
#: (no wrap-around), ``"oneref"`` (frame 0 with every other frame). All symmetrised (both orders).
GRAPH_PATTERN = re.compile(r"^(complete|oneref|swin-(\d+)(-noncyclic)?)$")


def graph_problem(graph: str) -> str | None:
    """``None`` if ``graph`` names a pair graph (:data:`GRAPH_PATTERN`), else the problem as a sentence."""
    m = GRAPH_PATTERN.match(graph or "")
    if m is None:
        return f"graph must be 'complete', 'oneref', 'swin-K' or 'swin-K-noncyclic' (K >= 1), got {graph!r}"
    if m.group(2) is not None and int(m.group(2)) < 1:
        return f"graph window K must be >= 1, got {graph!r}"
    return None


def load_arch(model_config: str) -> DUSt3RArch:
    """``"official"``/``"vitl_512_dpt"``/``"tiny"`` or the path of a ``tiny_config.json``-style JSON
    file → :class:`DUSt3RArch`. Raises ``ValueError`` (unreadable or inconsistent file)."""
    if model_config in PRESETS:
        return PRESETS[model_config]
    path = Path(model_config).expanduser()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"model_config {model_config!r} is not one of {sorted(PRESETS)} nor a readable "
            f"JSON file ({type(exc).__name__}: {exc})"
        ) from exc
    return DUSt3RArch.from_dict(data)


@attrs.define
class DUSt3RTeacherConfig:
    """``[teacher] component = "dust3r"`` options.

    * ``pretrained``: local ``.pth``/``.safetensors`` file or directory, or a Hugging Face id resolved
      from the local cache only; ``""`` gives random weights drawn from ``seed`` (tests, tiny recipes);
    * ``model_config``: ``"official"`` (ViT-L encoder, ViT-B decoder, DPT; 571M parameters),
      ``"tiny"`` (test size) or a JSON file in the layout of the reference ``tiny_config.json``;
    * ``image_size``: 512 (long side 512, sides cropped to multiples of 16) or 224 (224×224 centre
      crop); other values use the long-side rule; ``square_ok``: keep square images square (else 4:3);
    * ``crop``: ``False`` (default) resizes the whole frame instead (long side ``image_size``, short side
      the nearest multiple of 16), so the teacher sees the student's field of view; ``True`` = the
      reference ``load_images`` crops above;
    * ``alignment``: ``"global"`` (DUSt3R's global alignment over the pair graph ``graph``:
      spanning-tree initialisation, then ``niter`` Adam steps from ``lr`` to ``lr_min`` on a
      ``schedule``; defaults as DUSt3R's documented usage: complete graph, 300 steps, lr 0.01, cosine;
      videos of at most two frames use the pairwise derivation, as DUSt3R's demo does) or ``"oneref"`` (each frame derived from its pairs with one anchor, see ``pairing``);
    * ``graph``: ``"complete"``, ``"swin-K"``, ``"swin-K-noncyclic"`` or ``"oneref"`` (global alignment);
    * ``pairing``: anchors of ``alignment = "oneref"``: ``"first"`` (every frame paired with frame 0) or
      ``"keyframes"`` (every ``keyframe_interval``-th frame is a keyframe chained to the previous one,
      other frames pair with their keyframe);
    * ``layers``: decoder blocks (0-based, < decoder depth) whose tokens are returned as features;
      default: four evenly spaced blocks ending with the last, (2, 5, 8, 11) official, (0, 1, 2, 3) tiny;
    * ``dtype``: autocast dtype of the encoder/decoder (the heads always run in float32);
    * ``pair_batch_size``: image pairs per network call; ``focal_iters``: robust focal iterations;
    * ``revision``/``cache_dir``: Hugging Face cache look-up.

    A ``.pth`` that ``weights_only`` loading rejects is fully unpickled only when the user opts in
    (``geovr run --allow-pickle`` or ``GEOVR_ALLOW_PICKLE=1``, see :mod:`geovr.unpickling`); a recipe
    cannot (``allow_pickle = true`` is a validation error).
    """

    pretrained: str = OFFICIAL_CHECKPOINT
    model_config: str = "official"
    image_size: int = 512
    square_ok: bool = False
    crop: bool = False
    alignment: Literal["global", "oneref"] = "global"
    graph: str = "complete"
    niter: int = 300
    lr: float = 0.01
    lr_min: float = 1e-6
    schedule: Literal["cosine", "linear"] = "cosine"
    pairing: Literal["first", "keyframes"] = "first"
    keyframe_interval: int = 8
    layers: list[int] | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    pair_batch_size: int = 8
    focal_iters: int = 10
    seed: int = 0
    revision: str | None = None
    cache_dir: str | None = None

    def provides(self) -> frozenset[str]:
        """Teacher outputs (checked against the objectives' ``requires``)."""
        return PROVIDES

    def arch(self) -> DUSt3RArch:
        """The architecture named by ``model_config`` (raises ``ValueError`` if unreadable)."""
        return load_arch(self.model_config)

    def cache_layout(self, frames: int, height: int, width: int, layers):
        """Per-sample output shapes and forward FLOPs (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_dust3r.sizing import cache_layout

        return cache_layout(self, frames, height, width, layers)

    def build_meta(self):
        """The network on the meta device (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_dust3r.sizing import build_meta

        return build_meta(self)

    def feature_layers(self) -> tuple[int, ...]:
        """``layers``, or by default four evenly spaced decoder blocks ending with the last one,
        ``(D/4, D/2, 3D/4, D) − 1`` (0-based): (2, 5, 8, 11) official, (0, 1, 2, 3) tiny."""
        if self.layers is not None:
            return tuple(int(x) for x in self.layers)
        d = self.arch().dec_depth
        return tuple(sorted({max(0, d * k // 4 - 1) for k in (1, 2, 3, 4)}))

    def preflight(self) -> list[str]:
        """A checkpoint path must exist, or an HF id be in the local cache (checked without network)."""
        return checkpoint_source(
            self.pretrained, "pretrained", filename=None, cache_dir=self.cache_dir, revision=self.revision
        )

    def check(self) -> list[str]:
        """Cross-field rules; each string is reported as a recipe problem."""
        problems = []
        if self.image_size < 16:
            problems.append(f"image_size must be >= 16 (512 or 224 for the official model), got {self.image_size}")
        if self.keyframe_interval < 1:
            problems.append(f"keyframe_interval must be >= 1, got {self.keyframe_interval}")
        if self.pair_batch_size < 1:
            problems.append(f"pair_batch_size must be >= 1, got {self.pair_batch_size}")
        if self.focal_iters < 1:
            problems.append(f"focal_iters must be >= 1, got {self.focal_iters}")
        if graph_problem(self.graph):
            problems.append(graph_problem(self.graph))
        if self.niter < 0:
            problems.append(f"niter must be >= 0 (0 = spanning-tree initialisation only), got {self.niter}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.lr_min <= self.lr:
            problems.append(f"lr_min must be in [0, lr], got {self.lr_min}")
        try:
            depth = self.arch().dec_depth
        except ValueError as exc:
            return problems + [str(exc)]
        if self.layers is not None:
            bad = [layer for layer in self.layers if not 0 <= layer < depth]
            if bad:
                problems.append(
                    f"layers {bad} outside the decoder depth of model_config {self.model_config!r} "
                    f"(valid: 0..{depth - 1})"
                )
            if not self.layers:
                problems.append("layers must not be empty (omit it for the default)")
            if len(set(self.layers)) != len(self.layers):
                problems.append(f"layers {self.layers} has duplicates")
        return problems
