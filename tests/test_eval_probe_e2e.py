"""The ``geometry_probe`` evaluator end to end: dataset from the registry, frozen backbone, probes,
reports. Backbones whose hidden states hold the ground truth score well; noise scores like the
constant baseline; the tiny Qwen student runs through the real code path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from geovr import hookimpl
from geovr.eval.configs import GeometryProbeConfig
from geovr.eval.probe import build_geometry_probe, patch_depth
from geovr.protocols import BuildContext, StudentOutput
from geovr.testing import registered

S, H, W = 4, 32, 32


def _yaw(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


class PlaneVideos:
    """Videos of tilted planes with exact depth and camera rotations (sample dicts of geovr.data.collate)."""

    def __init__(self, n=10, seed=0):
        import torch

        rng = np.random.default_rng(seed)
        ys, xs = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
        self.items = []
        for i in range(n):
            depth = np.stack(
                [
                    rng.uniform(1, 4)
                    + rng.uniform(-1, 1) * xs
                    + rng.uniform(0, 3) * ys
                    + 0.5 * (rng.random((H, W)) < 0.1)
                    for _ in range(S)
                ]
            ).clip(0.5, 9)
            yaws = np.cumsum(rng.uniform(-0.3, 0.3, S))
            extr = np.stack([np.concatenate([_yaw(a), rng.normal(size=(3, 1))], 1) for a in yaws])
            frames = torch.from_numpy(np.repeat((1 / depth)[:, None], 3, 1)).float().clamp(0, 1)
            self.items.append(
                {
                    "frames": frames,
                    "depth": torch.from_numpy(depth).float(),
                    "extrinsics": torch.from_numpy(extr).float(),
                    "question": "q",
                    "answer": "a",
                    "question_type": "qa",
                    "scene_id": f"s{i}",
                    "sample_id": str(i),
                }
            )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class DataPlugin:
    @staticmethod
    @hookimpl
    def register_datasets(register):
        register("plane_videos", lambda config, context: PlaneVideos(**config))


class GridBackbone:
    """A backbone double with an 8×8 token grid: ``mode="oracle"`` features are a random linear embedding
    of the ground truth (log patch depth for the grids, relative rotation for the camera states);
    ``mode="noise"`` features are random. ``pose_layer``: that layer's grid also carries each frame's
    relative rotation (the same embedding at every token), as a student without camera tokens would."""

    num_layers, hidden_size = 2, 24

    def __init__(self, mode, pose_layer=None):
        import torch

        self.mode = mode
        self.pose_layer = pose_layer
        self.weight = torch.nn.Parameter(torch.zeros(1))
        rng = np.random.default_rng(5)
        self.mix_d, self.mix_r = rng.normal(size=(1, 24)), rng.normal(size=(9, 24))
        self.rng = np.random.default_rng(6)
        self.seen_grad = []

    def parameters(self):
        return [self.weight]

    def prepare(self, batch, *, with_answers=True):
        return {"batch": batch}

    def forward(self, inputs, *, geometry):
        import torch

        self.seen_grad.append(self.weight.requires_grad)
        batch = inputs["batch"]
        hidden, cams = {}, []
        rels = []
        for b in range(batch.batch_size):
            R = batch.extrinsics[b, :, :3, :3].double().numpy()
            rels.append((R @ R[0].T).reshape(S, 9) @ self.mix_r)  # [S, 24]
            cams.append(rels[-1] if self.mode == "oracle" else self.rng.normal(size=(S, 24)))
        for layer in geometry.layers:
            feats = []
            for b in range(batch.batch_size):
                d = patch_depth(batch.depth[b], (S, 8, 8))
                x = np.log(d)[..., None] @ self.mix_d if self.mode == "oracle" else self.rng.normal(size=(S, 8, 8, 24))
                if layer == self.pose_layer:
                    x = x + rels[b][:, None, None, :]
                feats.append(x + 0.01 * self.rng.normal(size=x.shape))
            hidden[layer] = torch.tensor(np.stack(feats))
        camera = torch.tensor(np.stack(cams)) if geometry.camera_tokens else None
        return StudentOutput(hidden=hidden, camera=camera)


def _probe(**kw):
    cfg = GeometryProbeConfig(
        dataset="plane_videos", dataset_options={"n": 10}, num_samples=10, train_fraction=0.7, progress=False, **kw
    )
    return build_geometry_probe(cfg, BuildContext())


def test_oracle_features_score_well_noise_poorly(tmp_path):
    with registered(DataPlugin(), "plane-data", isolated=True):
        oracle_bb = GridBackbone("oracle")
        good = _probe(layers=[1, 2], batch_size=3).evaluate(oracle_bb, tmp_path / "oracle")
        bad = _probe(layers=[1, 2], batch_size=3).evaluate(GridBackbone("noise"), tmp_path / "noise")
    for layer in (1, 2):
        assert good[f"depth_absrel_L{layer}"] < 0.02 and good[f"depth_delta1_L{layer}"] > 0.99, good
        assert 0.8 * bad["depth_absrel_constant"] < bad[f"depth_absrel_L{layer}"], bad
        assert bad[f"depth_absrel_L{layer}"] <= 1.02 * bad["depth_absrel_constant"], bad
        assert bad[f"depth_delta1_L{layer}"] < 0.7, bad
    assert good["rotation_error_deg"] < 1.0
    assert bad["rotation_error_deg"] > 0.5 * bad["rotation_error_identity_deg"] > 2.0
    # frozen during the probe, restored afterwards
    assert oracle_bb.seen_grad == [False] * len(oracle_bb.seen_grad) and oracle_bb.weight.requires_grad
    out = tmp_path / "oracle" / "geometry_probe"
    doc = json.loads((out / "probe.json").read_text())
    assert doc["videos"] == {"train": 7, "test": 3} and set(doc["layers"]) == {"1", "2"}
    md = (out / "probe.md").read_text()
    assert "| layer 1" in md and "lower is better" in md and "higher is better" in md
    assert "constant baseline" in md and "positive control" in md and (out / "probe.png").stat().st_size > 1000
    # the positive control (ground-truth-derived inputs) scores well whatever the backbone holds
    for res in (good, bad):
        assert res["depth_absrel_control"] < 0.1 * res["depth_absrel_constant"], res
        assert res["pose_error_control"] < 1.0, res
        assert res["translation_error_control"] < 0.1 * res["translation_error_constant"], res
    # noise never beats the constant by luck, nor loses to it (cross-validation falls back to it)
    assert bad["depth_absrel"] <= bad["depth_absrel_constant"] * 1.02, bad
    assert bad["pose_error"] <= bad["pose_error_constant"] * 1.02, bad
    assert bad["translation_error"] <= bad["translation_error_constant"] * 1.02, bad
    assert "identity rotation, no motion" in md and "training mean" in md


def test_pose_probe_without_camera_tokens_reads_the_visual_tokens(tmp_path):
    """The deployed student has no camera tokens: the pose probe reads each layer's frame-mean visual
    tokens and picks the layer by cross-validation on the training scenes (never the held-out ones)."""
    with registered(DataPlugin(), "plane-data", isolated=True):
        res = _probe(layers=[1, 2], batch_size=3, camera_tokens=False).evaluate(
            GridBackbone("noise", pose_layer=2), tmp_path
        )
        cam = _probe(layers=[1, 2], batch_size=3).evaluate(GridBackbone("noise", pose_layer=2), tmp_path / "cam")
    assert res["pose_layer"] == 2.0 and cam["pose_layer"] == -1.0, (res, cam)
    assert res["pose_error_L2"] < 1.0 < 0.5 * res["pose_error_constant"], res
    assert res["pose_error_L1"] > 0.5 * res["pose_error_constant"], res  # noise in layer 1
    assert res["pose_error"] == res["pose_error_L2"]
    # with camera tokens the (here random) camera states are probed instead
    assert cam["pose_error"] > 0.5 * cam["pose_error_constant"] and "pose_error_L2" not in cam, cam
    md = (tmp_path / "geometry_probe" / "probe.md").read_text()
    assert "frame-mean of layer 2 (chosen by cross-validation)" in md
    assert "| camera states |" in (tmp_path / "cam" / "geometry_probe" / "probe.md").read_text()


def test_tiny_qwen_student_on_synthetic_rooms(tmp_path):
    qwen_testing = pytest.importorskip("geovr_plugin_qwen_vl.testing", reason="geovr-plugin-qwen-vl is not installed")
    import torch

    torch.manual_seed(0)
    bb = qwen_testing.tiny_backbone("qwen2_5_vl")
    trainable = [p.requires_grad for p in bb.parameters()]
    cfg = GeometryProbeConfig(
        num_samples=4,
        batch_size=2,
        train_fraction=0.5,
        progress=False,
        dataset_options={"num_frames": 3, "image_size": [56, 56]},
    )
    assert cfg.options() == {
        "num_samples": 4,
        "seed": 12345,
        "with_geometry": True,
        "num_frames": 3,
        "image_size": [56, 56],
    }
    res = build_geometry_probe(cfg, BuildContext()).evaluate(bb, tmp_path)
    assert set(res) >= {
        "depth_absrel_L1",
        "depth_absrel_L2",
        "depth_delta1_L2",
        "rotation_error_deg",
        "rotation_error_identity_deg",
        "depth_absrel_constant",
    }
    assert all(math.isfinite(v) for v in res.values()), res
    assert 0 <= res["depth_delta1_L2"] <= 1 and res["depth_absrel_L2"] > 0
    assert [p.requires_grad for p in bb.parameters()] == trainable
    doc = json.loads((tmp_path / "geometry_probe" / "probe.json").read_text())
    assert doc["videos"] == {"train": 2, "test": 2}
