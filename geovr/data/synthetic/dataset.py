"""The ``synthetic_rooms`` dataset: scenes generated, rendered and questioned on the fly.

Sample ``i`` is a pure function of ``(config.seed, i)``: the scene, the camera path, the frames and
the question are identical whenever the index is read (no disk needed). Samples follow
:mod:`geovr.data.collate`: frames ``[S,3,H,W]`` float32 in [0,1], ``frame_indices [S]``, question,
options, answer, question_type, scene_id, sample_id and (with ``with_geometry``) depth ``[S,H,W]``
metres, intrinsics ``[S,3,3]``, extrinsics ``[S,3,4]`` world-to-camera.
"""

from __future__ import annotations

import numpy as np
import torch

from geovr.data.configs import SyntheticRoomsConfig
from geovr.data.synthetic.camera import make_trajectory
from geovr.data.synthetic.qa import generate_questions
from geovr.data.synthetic.render import render
from geovr.data.synthetic.scene import generate_scene
from geovr.errors import DataError


#: Frame rate of a synthetic camera path (the rate ``geovr synth`` writes its videos at): frame ``i`` is
#: shown at ``i / SYNTHETIC_FPS`` seconds.
SYNTHETIC_FPS = 10.0


def scene_seed(seed: int, index: int, attempt: int = 0) -> int:
    """Deterministic scene seed of sample ``index`` of a dataset seeded with ``seed``."""
    return int(np.random.default_rng([int(seed), int(index), int(attempt), 0x5EED]).integers(2**31 - 1))


def pixel_key(seed: int, index: int, config: SyntheticRoomsConfig) -> str:
    """Identity of the pixels (and ground truth) of sample ``index``: the generator seed and index plus
    every option that changes the scene, the camera path or the render (not ``num_samples``,
    ``with_geometry`` or ``compile_renderer``). See ``pixel_key`` in :mod:`geovr.data.collate`."""
    import json

    opts = {"seed": int(seed), "index": int(index), "num_frames": config.num_frames,
            "image_size": list(config.image_size), "num_objects": list(config.num_objects),
            "trajectory": config.trajectory, "question_types": sorted(config.question_types)}
    return "synthetic_rooms:" + json.dumps(opts, sort_keys=True, separators=(",", ":"))


def make_sample(seed: int, index: int, config: SyntheticRoomsConfig) -> dict:
    """Build sample ``index`` (see the module docstring); retries a new scene (up to 8 times) when
    none of ``config.question_types`` can be asked about it."""
    H, W = config.image_size
    for attempt in range(8):
        s = scene_seed(seed, index, attempt)
        scene = generate_scene(s, tuple(config.num_objects), name=f"synth_s{seed}_i{index}")
        traj = make_trajectory(scene, config.num_frames, (H, W), s, kind=config.trajectory)
        out = render(scene, traj.intrinsics, traj.extrinsics, (H, W), compiled=config.compile_renderer)
        records = generate_questions(scene, out["ids"], seed=s, question_types=config.question_types)
        if records:
            break
    else:
        raise DataError(f"synthetic_rooms: no question of types {config.question_types} for sample {index}")
    rec = records[int(np.random.default_rng([s, 1]).integers(len(records)))]
    sample = {
        "frames": out["rgb"], "frame_indices": torch.arange(config.num_frames, dtype=torch.long),
        "frame_times": torch.arange(config.num_frames, dtype=torch.float32) / SYNTHETIC_FPS,
        "question": rec["question"], "options": rec["options"], "answer": rec["ground_truth"],
        "question_type": rec["question_type"], "scene_id": scene.name,
        "sample_id": f"{scene.name}:{rec['id']}", "pixel_key": pixel_key(seed, index, config),
    }
    if config.with_geometry:
        sample.update(depth=out["depth"], intrinsics=torch.as_tensor(traj.intrinsics, dtype=torch.float32),
                      extrinsics=torch.as_tensor(traj.extrinsics, dtype=torch.float32))
    return sample


class SyntheticRoomsDataset(torch.utils.data.Dataset):
    """``len = config.num_samples``; ``dataset[i]`` renders sample ``i`` (deterministic)."""

    def __init__(self, config: SyntheticRoomsConfig):
        self.config = config

    def __len__(self) -> int:
        return self.config.num_samples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} outside 0..{len(self) - 1}")
        return make_sample(self.config.seed, index, self.config)

    def pixel_key(self, index: int) -> str:
        """``dataset[index]["pixel_key"]`` without rendering (cache planning)."""
        return pixel_key(self.config.seed, index, self.config)


def build(config: SyntheticRoomsConfig, context=None) -> SyntheticRoomsDataset:
    """Factory of the ``synthetic_rooms`` dataset component."""
    return SyntheticRoomsDataset(config)
