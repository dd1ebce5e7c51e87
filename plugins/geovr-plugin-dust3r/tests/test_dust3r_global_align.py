"""Global alignment over a pair graph, fed pair predictions derived from the synthetic world's exact
geometry: exact inputs are recovered, noisy inputs with non-overlapping far pairs are aligned better
than by pairing every frame with frame 0, and the teacher wires it up (network replaced by an oracle)."""

from __future__ import annotations

import pytest
import torch

from geovr.geometry import closed_form_inverse_se3
from geovr_plugin_dust3r.config import DUSt3RTeacherConfig
from geovr_plugin_dust3r.global_align import global_align, init_spanning_tree, make_edges
from geovr_plugin_dust3r.pointmaps import frames_from_pairs
from geovr_plugin_dust3r.simulate import oneref_pairs, pair_predictions, pose_depth_errors, synthetic_scene
from geovr_plugin_dust3r.teacher import load_teacher

F64 = torch.float64


def test_pair_graphs():
    assert make_edges(3, "complete") == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert make_edges(4, "oneref") == [(0, 1), (0, 2), (0, 3), (1, 0), (2, 0), (3, 0)]
    # sliding window wraps around (4 → 0) unless noncyclic
    assert make_edges(5, "swin-1") == [(0, 1), (0, 4), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 0), (4, 3)]
    assert make_edges(5, "swin-1-noncyclic") == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3)]
    assert len(make_edges(6, "swin-2-noncyclic")) == 2 * (5 + 4)
    assert make_edges(4, "swin-9") == make_edges(4, "complete")
    assert make_edges(1, "complete") == []
    for bad in ("ring", "swin-0", "swin", ""):
        with pytest.raises(ValueError, match="graph"):
            make_edges(4, bad)


def test_disconnected_graph_is_an_error():
    scene = synthetic_scene(4, (8, 8))
    edges = [(0, 1), (1, 0), (2, 3), (3, 2)]
    pi, pj, ci, cj = pair_predictions(scene, edges)
    with pytest.raises(ValueError, match="does not connect all 4 frames"):
        init_spanning_tree(edges, pi, pj, ci, cj, 4)


def _gt_relative(scene):
    c2w = scene["cam_to_world"]
    return closed_form_inverse_se3(c2w[0])[None] @ c2w  # camera → camera 0


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(6, (16, 24), seed=0, trajectory="walk")


def test_exact_pointmaps_are_recovered(scene):
    """Noise-free predictions, every pair at its own scale: the spanning-tree initialisation is exact
    (float64), and Adam steps (float32, the teacher's precision) stay at the solution (the L1
    energy's gradient does not vanish there, so Adam leaves a jitter of a few 1e-3 in depth)."""
    S = 6
    edges = make_edges(S, "complete")
    pi, pj, ci, cj = pair_predictions(scene, edges, seed=3)
    out = global_align(edges, pi[None], pj[None], ci[None], cj[None], S, niter=0)
    s = float(scene["depth"].median() / out["depth"][0].median())  # the pairs' average scale → metres
    torch.testing.assert_close(s * out["depth"][0], scene["depth"], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(out["focal"][0], scene["focal"], atol=1e-8, rtol=0)
    gt = _gt_relative(scene)
    torch.testing.assert_close(out["cam_to_ref"][0, :, :3, :3], gt[:, :3, :3], atol=1e-9, rtol=0)
    torch.testing.assert_close(s * out["cam_to_ref"][0, :, :3, 3], gt[:, :3, 3], atol=1e-9, rtol=0)
    torch.testing.assert_close(
        s * out["points"][0],
        scene["world"] @ closed_form_inverse_se3(scene["cam_to_world"][0])[:3, :3].T
        + closed_form_inverse_se3(scene["cam_to_world"][0])[:3, 3],
        atol=1e-8,
        rtol=0,
    )
    assert out["extrinsics"].shape == (1, S, 3, 4) and torch.equal(out["cam_to_ref"][0, 0], torch.eye(4, dtype=F64))

    out = global_align(edges, *(x[None].float() for x in (pi, pj, ci, cj)), S, niter=100)
    err = pose_depth_errors(out, scene)
    assert err["rot_deg"].max() < 0.1, err["rot_deg"]
    assert err["trans"].max() < 0.01 * float(scene["depth"].median()), err["trans"]
    assert err["depth_absrel"].max() < 6e-3, err["depth_absrel"]
    assert err["focal_rel"].max() < 6e-3, err["focal_rel"]


def test_noisy_far_frames_beat_one_reference():
    """Per-pixel noise (2 % of depth), 1° rigid error per pair and no overlap beyond 2 frames (pairs
    further apart: 20° rigid error, confidence about 1.05). Frames 3.. rest on such a pair with frame 0 when
    paired with frame 0 only; the global alignment chains them through their neighbours instead."""
    S, kw = 7, {"noise": 0.02, "pair_error_deg": 1.0, "overlap": 2}
    edges, seeds = make_edges(S, "complete"), (0, 1)
    scenes = [synthetic_scene(S, (16, 24), seed=seed, trajectory="walk") for seed in seeds]
    one = [
        pose_depth_errors(frames_from_pairs(*oneref_pairs(sc, seed=seed, **kw)), sc)
        for sc, seed in zip(scenes, seeds, strict=False)
    ]
    preds = [pair_predictions(sc, edges, seed=seed, **kw) for sc, seed in zip(scenes, seeds, strict=False)]
    out = global_align(
        edges, *(torch.stack(x).float() for x in zip(*preds, strict=False)), S
    )  # both videos in one batch
    glob = [pose_depth_errors({k: v[b : b + 1] for k, v in out.items()}, sc) for b, sc in enumerate(scenes)]

    def mean(errs, key, frames):
        return float(torch.stack([e[key][frames] for e in errs]).mean())

    near, far = slice(1, 3), slice(3, S)
    # far frames: several times better (measured: rotation ~16° vs ~2°, centre ~1.1 vs ~0.07 m)
    assert mean(glob, "rot_deg", far) < 0.3 * mean(one, "rot_deg", far)
    assert mean(glob, "trans", far) < 0.3 * mean(one, "trans", far)
    # near frames and depth: no worse (margins for the seeds' spread)
    assert mean(glob, "rot_deg", near) < mean(one, "rot_deg", near) + 0.5
    assert mean(glob, "trans", near) < mean(one, "trans", near) + 0.03
    assert mean(glob, "depth_absrel", slice(0, S)) <= mean(one, "depth_absrel", slice(0, S))


def test_teacher_global_alignment_wiring(monkeypatch):
    """The teacher's global path with the network replaced by an oracle returning exact pointmaps of a
    synthetic scene for whatever pairs it is asked (each pair at its own scale): poses, depth (up to
    the one global scale), focal lengths, pose encoding and per-frame features come out right."""
    S, H, W = 4, 16, 32
    scene = synthetic_scene(S, (H, W), seed=2, trajectory="walk")
    teacher = load_teacher(DUSt3RTeacherConfig(pretrained="", model_config="tiny", image_size=32, niter=0))
    levels = torch.arange(S, dtype=torch.float32) / (S + 2) + 0.1  # frame i = constant image of level i
    asked = []

    def frame_index(img):  # [P,3,H,W] in [-1,1] → [P]
        return (((img[:, 0, 0, 0] + 1) / 2 - 0.1) * (S + 2)).round().long()

    def oracle(img, first, second, layers):
        i1, i2 = frame_index(img[0, first]), frame_index(img[0, second])
        assert i1.tolist() == first and i2.tolist() == second
        asked.extend(zip(first, second, strict=False))
        pi, pj, ci, cj = pair_predictions(scene, list(zip(first, second, strict=False)), seed=1, dtype=torch.float32)
        # view-1 confidence ranks pairs; frame k's features must come from its best pair (k, m)
        ci = ci * (1 + (i1 + 2 * i2).float())[:, None, None]
        feats = {
            layer: (i1 * 10 + i2 + 1000 * layer).float()[:, None, None, None].expand(len(first), 1, 2, 4)
            for layer in layers
        }
        return {"pts1": pi, "conf1": ci, "pts2": pj, "conf2": cj, "feats": feats}

    monkeypatch.setattr(teacher, "_run_pairs", oracle)
    frames = levels[None, :, None, None, None].expand(1, S, 3, H, W).contiguous()
    out = teacher.encode(frames, layers=(1, 3))
    assert sorted(asked) == make_edges(S, "complete")
    gt = _gt_relative(scene).float()
    ext = out.extrinsics[0]
    torch.testing.assert_close(ext[:, :, :3], closed_form_inverse_se3(gt)[:, :3, :3], atol=1e-4, rtol=0)
    s = float(scene["depth"].median() / out.depth[0].median())
    torch.testing.assert_close(s * out.depth[0], scene["depth"].float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s * ext[:, :, 3], closed_form_inverse_se3(gt)[:, :3, 3], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.intrinsics[0, :, 0, 0], scene["focal"].float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.pose_enc[0, 0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]), atol=1e-6, rtol=0)
    # best view-1 pair of frame k: (k, m) with the largest m (largest confidence factor k + 2m)
    best = [max(j for i, j in make_edges(S, "complete") if i == k) for k in range(S)]
    for layer in (1, 3):
        got = out.features[layer][0, :, 0, 0, 0]
        torch.testing.assert_close(got, torch.tensor([k * 10 + best[k] + 1000.0 * layer for k in range(S)]))
