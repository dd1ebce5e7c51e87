"""The pointmap → depth / focal / pose derivation, fed ground-truth pointmaps of a hand-built box
room seen from known cameras (independent of network weights)."""

from __future__ import annotations

import math

import pytest
import torch

from geovr.geometry import closed_form_inverse_se3, extri_intri_to_pose_encoding, quat_to_mat
from geovr_plugin_dust3r.config import DUSt3RTeacherConfig
from geovr_plugin_dust3r.pointmaps import anchors, estimate_focal, frames_from_pairs, umeyama
from geovr_plugin_dust3r.teacher import load_teacher

F64 = torch.float64


def box_room(S=5, H=16, W=32, f=20.0):
    """Cameras inside the box [-2,2.5]×[-1.5,1.5]×[-2,3] (camera-to-world ``[S,4,4]``), ray-cast
    z-depth ``[S,H,W]`` of the walls and world points ``[S,H,W,3]``; principal point ``(W/2, H/2)``."""
    lo = torch.tensor([-2.0, -1.5, -2.0], dtype=F64)
    hi = torch.tensor([2.5, 1.5, 3.0], dtype=F64)
    c2w = torch.eye(4, dtype=F64).repeat(S, 1, 1)
    for i in range(S):
        c2w[i, :3, :3] = quat_to_mat(torch.tensor([0.05 * i, 0.3 * math.sin(i), 0.02 * i, 1.0], dtype=F64))
        c2w[i, :3, 3] = torch.tensor([0.3 * i - 0.5, 0.1 * i, -0.4 * i + 0.2], dtype=F64)
    v, u = torch.meshgrid(torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing="ij")
    ray = torch.stack([(u - W / 2) / f, (v - H / 2) / f, torch.ones_like(u)], -1)
    depth = []
    for i in range(S):
        centre, dw = c2w[i, :3, 3], ray @ c2w[i, :3, :3].T
        t = torch.where(dw > 0, (hi - centre) / dw, (lo - centre) / dw)
        depth.append(torch.where(dw.abs() < 1e-12, torch.full_like(t, math.inf), t).min(-1).values)
    depth = torch.stack(depth)
    world = (depth[..., None] * ray) @ c2w[:, None, :3, :3].transpose(-1, -2) + c2w[:, None, None, :3, 3]
    return c2w, depth, world, f


def in_camera(c2w, pts):
    """World points ``[...,3]`` into the camera with camera-to-world ``c2w [4,4]``."""
    w2c = closed_form_inverse_se3(c2w)
    return pts @ w2c[:3, :3].T + w2c[:3, 3]


def gt_pairs(c2w, world, anchor, seed=1, scale00=1.0):
    """Ground-truth predictions for the pairs (a(i), i) and (i, a(i)), each pair at its own random scale."""
    S, H, W, _ = world.shape
    g = torch.Generator().manual_seed(seed)
    sigma = torch.rand(S, generator=g, dtype=F64) * 3 + 0.2
    sigma[0] = scale00
    tau = torch.rand(S, generator=g, dtype=F64) * 3 + 0.2
    conf = lambda: 1 + 5 * torch.rand(1, S, H, W, generator=g, dtype=F64)  # noqa: E731
    fwd = {
        "pts1": torch.stack([sigma[i] * in_camera(c2w[anchor[i]], world[anchor[i]]) for i in range(S)])[None],
        "pts2": torch.stack([sigma[i] * in_camera(c2w[anchor[i]], world[i]) for i in range(S)])[None],
        "conf1": conf(),
        "conf2": conf(),
    }
    bwd = {"pts1": torch.stack([tau[i] * in_camera(c2w[i], world[i]) for i in range(S)])[None], "conf1": conf()}
    bwd["pts1"][:, 0], bwd["conf1"][:, 0] = fwd["pts1"][:, 0], fwd["conf1"][:, 0]
    return fwd, bwd


def test_anchor_strategies():
    assert anchors(4) == [0, 0, 0, 0]
    assert anchors(7, "keyframes", 3) == [0, 0, 0, 0, 3, 3, 3]
    assert anchors(5, "keyframes", 2) == [0, 0, 0, 2, 2]
    with pytest.raises(ValueError):
        anchors(3, "nearest")


@pytest.mark.parametrize("strategy", ["first", "keyframes"])
def test_gt_pointmaps_recover_poses_focal_depth(strategy):
    c2w, depth, world, f = box_room()
    anchor = anchors(len(c2w), strategy, 2)
    fwd, bwd = gt_pairs(c2w, world, anchor)
    out = frames_from_pairs(fwd, bwd, anchor)
    gt_ext = (closed_form_inverse_se3(c2w) @ c2w[0])[:, :3]  # camera-from-camera-0
    torch.testing.assert_close(out["depth"][0], depth, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(out["focal"][0], torch.full((5,), f, dtype=F64), atol=1e-9, rtol=0)
    torch.testing.assert_close(out["extrinsics"][0], gt_ext, atol=1e-9, rtol=0)
    torch.testing.assert_close(out["points"][0], in_camera(c2w[0], world), atol=1e-9, rtol=0)
    torch.testing.assert_close(out["extrinsics"][0, 0], torch.eye(4, dtype=F64)[:3], atol=0, rtol=0)


def test_global_scale_is_frame0_own_pointmap():
    c2w, depth, world, f = box_room()
    anchor = anchors(5)
    fwd, bwd = gt_pairs(c2w, world, anchor, scale00=2.5)
    out = frames_from_pairs(fwd, bwd, anchor)
    gt_ext = (closed_form_inverse_se3(c2w) @ c2w[0])[:, :3]
    torch.testing.assert_close(out["depth"][0], 2.5 * depth, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(out["extrinsics"][0, :, :, :3], gt_ext[..., :3], atol=1e-9, rtol=0)
    torch.testing.assert_close(out["extrinsics"][0, :, :, 3], 2.5 * gt_ext[..., 3], atol=1e-9, rtol=0)
    torch.testing.assert_close(out["focal"][0], torch.full((5,), f, dtype=F64), atol=1e-9, rtol=0)


def test_focal_is_robust_to_outliers():
    c2w, depth, world, f = box_room(S=1)
    pts = in_camera(c2w[0], world).clone()  # [1,H,W,3]
    pts[0, :2, :5] *= torch.tensor([3.0, -2.0, 1.0], dtype=F64)  # 10 of 512 pixels corrupted
    assert abs(float(estimate_focal(pts, iters=1)[0]) - f) > 0.05  # plain least squares is pulled away
    assert abs(float(estimate_focal(pts, iters=30)[0]) - f) < 0.05 * abs(float(estimate_focal(pts, iters=1)[0]) - f)


def test_umeyama_recovers_similarity_and_ignores_zero_weights():
    g = torch.Generator().manual_seed(3)
    src = torch.randn(2, 50, 3, generator=g, dtype=F64)
    R = quat_to_mat(torch.randn(2, 4, generator=g, dtype=F64))
    t = torch.randn(2, 3, generator=g, dtype=F64)
    s = torch.tensor([0.5, 3.0], dtype=F64)
    dst = s[:, None, None] * torch.einsum("nij,npj->npi", R, src) + t[:, None]
    w = torch.rand(2, 50, generator=g, dtype=F64)
    dst[:, :5] += 10.0
    w[:, :5] = 0
    s2, R2, t2 = umeyama(src, dst, w)
    torch.testing.assert_close(s2, s)
    torch.testing.assert_close(R2, R)
    torch.testing.assert_close(t2, t)


def test_teacher_wiring_with_ground_truth_pairs(monkeypatch):
    """The full encode path (preprocessing, pair ordering, splitting, pose encoding) with the network
    replaced by an oracle that returns ground-truth pointmaps for whatever pair it is given."""
    S = 5
    c2w, depth, world, f = box_room(S=S, H=16, W=32)
    teacher = load_teacher(
        DUSt3RTeacherConfig(
            pretrained="",
            model_config="tiny",
            image_size=32,
            pairing="keyframes",
            keyframe_interval=2,
            crop=True,
            alignment="oneref",
        )
    )  # reference crop path
    levels = torch.arange(S, dtype=torch.float32) / (S + 2) + 0.1  # frame i = constant image of level i

    def frame_index(img):  # [P,3,H,W] in [-1,1] → [P]
        return (((img[:, 0, 0, 0] + 1) / 2 - 0.1) * (S + 2)).round().long()

    def oracle(img, first, second, layers):  # img [B,S,3,H,W]; pairs (first[p], second[p])
        assert img.shape[:2] == (1, S)
        i1, i2 = frame_index(img[0, first]), frame_index(img[0, second])
        assert i1.tolist() == first and i2.tolist() == second
        P = len(i1)
        pts1 = torch.stack([in_camera(c2w[a], world[a]) for a in i1.tolist()]).float()
        pts2 = torch.stack(
            [in_camera(c2w[a], world[b]) for a, b in zip(i1.tolist(), i2.tolist(), strict=False)]
        ).float()
        scale = torch.linspace(0.5, 2.0, P)[:, None, None, None] if P > 1 else torch.ones(1, 1, 1, 1)
        scale[(i1 == 0) & (i2 == 0)] = 1.0  # pair (0, 0) sets the global scale
        conf = torch.ones(P, 16, 32) * 2
        feats = {layer: (i1.float() * 100 + layer)[:, None, None, None].expand(P, 1, 2, 4) for layer in layers}
        return {"pts1": pts1 * scale, "conf1": conf, "pts2": pts2 * scale, "conf2": conf, "feats": feats}

    monkeypatch.setattr(teacher, "_run_pairs", oracle)
    frames = levels[None, :, None, None, None].expand(1, S, 3, 24, 32).contiguous()  # cropped to 16×32
    out = teacher.encode(frames, layers=(1, 3))
    gt_ext = (closed_form_inverse_se3(c2w) @ c2w[0])[:, :3].float()
    torch.testing.assert_close(out.depth[0], depth.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.extrinsics[0], gt_ext, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.intrinsics[0, :, 0, 0], torch.full((S,), f), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.intrinsics[0, :, :2, 2], torch.tensor([16.0, 8.0]).expand(S, 2), atol=0, rtol=0)
    K = out.intrinsics
    torch.testing.assert_close(out.pose_enc, extri_intri_to_pose_encoding(gt_ext[None], K, (16, 32)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pose_enc[0, 0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]), atol=1e-7, rtol=0)
    torch.testing.assert_close(out.points[0], in_camera(c2w[0], world).float(), atol=1e-5, rtol=1e-5)
    # features: each frame's own view-1 tokens (frame index encoded in the oracle's features)
    for layer in (1, 3):
        assert out.features[layer].shape == (1, S, 1, 2, 4)
        torch.testing.assert_close(out.features[layer][0, :, 0, 0, 0], torch.arange(S) * 100.0 + layer)


@pytest.mark.parametrize("strategy", ["first", "keyframes"])
def test_synthetic_world_scene_recovered_from_its_pointmaps(strategy):
    """The same on a room rendered by the embedded synthetic world (ground-truth depth and cameras)."""
    from geovr.geometry import unproject_depth
    from geovr.plugins import get_registry
    from geovr.protocols import BuildContext

    data = (
        get_registry()
        .get("dataset", "synthetic_rooms")
        .build({"num_samples": 1, "num_frames": 4, "image_size": [48, 64], "num_objects": [3, 6]}, BuildContext())
    )
    sample = data[0]
    depth, K, ext = sample["depth"].double(), sample["intrinsics"].double(), sample["extrinsics"].double()
    U, _, Vh = torch.linalg.svd(ext[:, :, :3])  # float32-stored rotations, made exactly orthonormal
    ext[:, :, :3] = U @ Vh
    world = unproject_depth(depth[None], ext[None], K[None])[0]  # [S,H,W,3]
    c2w = closed_form_inverse_se3(ext)
    anchor = anchors(4, strategy, 2)
    fwd, bwd = gt_pairs(c2w, world, anchor, seed=5)
    out = frames_from_pairs(fwd, bwd, anchor)
    torch.testing.assert_close(out["depth"][0], depth, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(out["focal"][0], K[:, 0, 0], atol=1e-8, rtol=0)
    gt_rel = (closed_form_inverse_se3(c2w) @ c2w[0])[:, :3]
    torch.testing.assert_close(out["extrinsics"][0], gt_rel, atol=1e-9, rtol=0)
