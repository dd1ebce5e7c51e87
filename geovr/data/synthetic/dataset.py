"""The ``synthetic_rooms`` dataset: scenes generated, rendered and questioned on the fly.

Sample ``i`` is a pure function of ``(config.seed, i)``: the scene, the camera path, the frames and
the question are identical whenever the index is read. Rendered scenes are kept in an on-disk cache
keyed by the world's options (:mod:`geovr.data.synthetic.cache`; ``cache = false`` renders every time),
so runs sharing scenes (ablation arms and seeds, epochs) render each once. Frames are quantised to
8 bits (the precision of a video) whether or not they come from the cache. Samples follow
:mod:`geovr.data.collate`: frames ``[S,3,H,W]`` float32 in [0,1], ``frame_indices [S]``, question,
options, answer, question_type, scene_id, sample_id and (with ``with_geometry``) depth ``[S,H,W]``
metres, intrinsics ``[S,3,3]``, extrinsics ``[S,3,4]`` world-to-camera.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from geovr.data.configs import SyntheticRoomsConfig
from geovr.data.synthetic.camera import make_trajectory
from geovr.data.synthetic.qa import generate_questions
from geovr.data.synthetic.render import render
from geovr.data.synthetic.scene import generate_scene
from geovr.errors import DataError

if TYPE_CHECKING:
    from geovr.protocols import BuildContext


#: Frame rate of a synthetic camera path (the rate ``geovr synth`` writes its videos at): frame ``i`` is
#: shown at ``i / SYNTHETIC_FPS`` seconds.
SYNTHETIC_FPS = 10.0


def scene_seed(seed: int, index: int, attempt: int = 0) -> int:
    """Deterministic scene seed of sample ``index`` of a dataset seeded with ``seed``."""
    return int(np.random.default_rng([int(seed), int(index), int(attempt), 0x5EED]).integers(2**31 - 1))


def _world_options(span: float, walls: str) -> dict:
    """The world options that key pixels and cached scenes only when they differ from their defaults (so
    the default keeps every existing pixel key and cache entry): ``span`` when not 1, ``walls`` when not
    ``"uniform"``."""
    out: dict = {}
    if span != 1.0:
        out["span"] = float(span)
    if walls != "uniform":
        out["walls"] = str(walls)
    return out


def pixel_key(seed: int, index: int, config: SyntheticRoomsConfig) -> str:
    """Identity of the pixels (and ground truth) of sample ``index``: the generator seed and the scene the
    sample shows (``index // questions_per_scene``) plus every option that changes the scene, the camera
    path or the render (not ``num_samples``, ``prompt``, ``with_geometry`` or ``compile_renderer``;
    ``question_types`` decides which scenes are kept). See ``pixel_key`` in :mod:`geovr.data.collate`."""
    import json

    q = max(1, int(getattr(config, "questions_per_scene", 1)))
    opts = {
        "seed": int(seed),
        "scene": int(index) // q,
        "num_frames": config.num_frames,
        "image_size": list(config.image_size),
        "num_objects": list(config.num_objects),
        "trajectory": config.trajectory,
        "question_types": sorted(config.question_types),
    }
    opts.update(_world_options(getattr(config, "span", 1.0), getattr(config, "walls", "uniform")))
    return "synthetic_rooms:" + json.dumps(opts, sort_keys=True, separators=(",", ":"))


def render_scene(
    seed: int,
    *,
    num_objects=(8, 24),
    num_frames: int = 8,
    image_size=(224, 224),
    trajectory: str | None = None,
    name: str | None = None,
    compiled: bool = False,
    cache=None,
    span: float = 1.0,
    walls: str = "uniform",
) -> tuple:
    """Scene of ``seed`` rendered along its camera path, with all its questions.

    Returns ``(scene, entry)`` with ``entry = {"rgb": [S,H,W,3] uint8, "depth": [S,H,W] float32 m,
    "ids": [S,H,W] uint8, "intrinsics": [S,3,3], "extrinsics": [S,3,4] float64, "kind", "records"}``
    (``records``: every question of :func:`geovr.data.synthetic.qa.generate_questions`, asked only
    about objects seen in these frames). ``cache``: a :class:`~geovr.data.synthetic.cache.SceneCache`
    read first and filled on a miss (``None``: always render). ``span``: see
    :func:`~geovr.data.synthetic.camera.make_trajectory`; ``walls``: see
    :func:`~geovr.data.synthetic.scene.generate_scene`.
    """
    H, W = image_size
    scene = generate_scene(seed, tuple(num_objects), name=name, walls=walls)
    options = {
        "seed": int(seed),
        "num_objects": [int(v) for v in num_objects],
        "num_frames": int(num_frames),
        "image_size": [int(H), int(W)],
        "trajectory": trajectory,
    }
    options.update(_world_options(span, walls))
    entry = cache.get(options) if cache is not None else None
    if entry is None:
        traj = make_trajectory(scene, num_frames, (H, W), seed, kind=trajectory, span=span)
        out = render(scene, traj.intrinsics, traj.extrinsics, (H, W), compiled=compiled)
        ids = out["ids"].to(torch.uint8)  # at most 30 objects
        entry = {
            "rgb": out["rgb"].permute(0, 2, 3, 1).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8),
            "depth": out["depth"].float(),
            "ids": ids,
            "intrinsics": torch.as_tensor(traj.intrinsics, dtype=torch.float64),
            "extrinsics": torch.as_tensor(traj.extrinsics, dtype=torch.float64),
            "kind": traj.kind,
            "records": generate_questions(scene, ids.numpy(), seed=seed),
        }
        if cache is not None:
            cache.put(options, entry)
    for rec in entry["records"]:
        rec["scene_name"] = scene.name
    return scene, entry


def make_sample(seed: int, index: int, config: SyntheticRoomsConfig, cache=None) -> dict:
    """Build sample ``index`` (see the module docstring). With ``questions_per_scene = q`` samples
    ``q·k … q·k+q-1`` share scene ``k`` and ask different questions of it. Retries a new scene (up to
    8 times) when none of ``config.question_types`` can be asked about it."""
    q = max(1, int(getattr(config, "questions_per_scene", 1)))
    scene_index, slot = divmod(index, q)
    keep = set(config.question_types)
    for attempt in range(8):
        s = scene_seed(seed, scene_index, attempt)
        scene, entry = render_scene(
            s,
            num_objects=config.num_objects,
            num_frames=config.num_frames,
            image_size=config.image_size,
            trajectory=config.trajectory,
            name=f"synth_s{seed}_i{scene_index}",
            compiled=config.compile_renderer,
            cache=cache,
            span=getattr(config, "span", 1.0),
            walls=getattr(config, "walls", "uniform"),
        )
        records = [r for r in entry["records"] if r["question_type"] in keep]
        if records:
            break
    else:
        raise DataError(f"synthetic_rooms: no question of types {config.question_types} for sample {index}")
    order = np.random.default_rng([s, 1]).permutation(len(records))
    rec = records[int(order[slot % len(records)])]
    question, options = rec["question"], rec["options"]
    prompt = getattr(config, "prompt", None)
    if prompt:
        from geovr.eval.prompts import doc_prompt

        question, options = doc_prompt(rec, protocol=prompt), None
    sample = {
        "frames": entry["rgb"].permute(0, 3, 1, 2).float().div_(255.0),
        "frame_indices": torch.arange(config.num_frames, dtype=torch.long),
        "frame_times": torch.arange(config.num_frames, dtype=torch.float32) / SYNTHETIC_FPS,
        "question": question,
        "options": options,
        "answer": rec["ground_truth"],
        "question_type": rec["question_type"],
        "scene_id": scene.name,
        # a scene with fewer matching questions than questions_per_scene repeats one: keep ids unique
        "sample_id": f"{scene.name}:{rec['id']}" + (f"#{slot}" if slot >= len(records) else ""),
        "pixel_key": pixel_key(seed, index, config),
    }
    if config.with_geometry:
        sample.update(
            depth=entry["depth"], intrinsics=entry["intrinsics"].float(), extrinsics=entry["extrinsics"].float()
        )
    return sample


class SyntheticRoomsDataset(torch.utils.data.Dataset):
    """``len = config.num_samples``; ``dataset[i]`` renders sample ``i`` (deterministic)."""

    def __init__(self, config: SyntheticRoomsConfig):
        from geovr.data.synthetic.cache import SceneCache

        self.config = config
        self.cache = SceneCache(config.cache_dir) if getattr(config, "cache", False) else None

    def __len__(self) -> int:
        return self.config.num_samples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} outside 0..{len(self) - 1}")
        return make_sample(self.config.seed, index, self.config, self.cache)

    def pixel_key(self, index: int) -> str:
        """``dataset[index]["pixel_key"]`` without rendering (cache planning)."""
        return pixel_key(self.config.seed, index, self.config)


def build(config: SyntheticRoomsConfig, context: BuildContext | None = None) -> SyntheticRoomsDataset:
    """Factory of the ``synthetic_rooms`` dataset component."""
    return SyntheticRoomsDataset(config)
