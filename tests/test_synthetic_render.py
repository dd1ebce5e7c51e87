"""Synthetic world: scene invariants, exact depth, multi-view consistency, determinism, reference parity."""

import math

import numpy as np
import pytest
import torch

from geovr.data.synthetic.camera import camera_extrinsics, free_mask, intrinsics_from_fov, make_trajectory
from geovr.data.synthetic.catalog import CATEGORIES
from geovr.data.synthetic.reference import render_reference
from geovr.data.synthetic.render import render
from geovr.data.synthetic.scene import Room, Scene, SceneObject, generate_scene, rects_overlap


def _box_room():
    room = Room(5.0, 4.0, 2.8)
    box = SceneObject(1, "cabinet", "box", (3.0, 2.0, 0.5), (1.0, 1.5, 1.0))
    return Scene("hand", room, [box])


def test_fronto_parallel_wall_and_box_depth_exact():
    scene = _box_room()
    H, W = 32, 48
    K = intrinsics_from_fov(60.0, H, W)[None]
    E = camera_extrinsics((1.0, 2.0, 1.4), 0.0, 0.0)[None]  # looking along +x, far wall at x=5
    out = render(scene, K, E, (H, W), normals=True)
    depth, ids = out["depth"][0], out["ids"][0]
    # pixels above the box (row 2..8 around the centre columns) see the far wall at exactly 4 m
    wall = (ids == 0) & (out["normals"][0, 0] < -0.99)
    assert wall.sum() > 100
    assert (depth[wall] - 4.0).abs().max() < 1e-4
    # the box's front face x=2.5 is at exactly 1.5 m
    front = (ids == 1) & (out["normals"][0, 0] < -0.99)
    assert front.sum() > 50
    assert (depth[front] - 1.5).abs().max() < 1e-4
    # the projected front face spans |y - 2| <= 0.75, z in [0, 1] -> columns/rows from the pinhole model
    f = K[0, 0, 0]
    u_edge = W / 2 + f * 0.75 / 1.5
    cols = front.any(0).nonzero()[:, 0]
    assert cols.max().item() <= u_edge and cols.max().item() >= u_edge - 1


def test_unproject_reproject_agrees_where_visible():
    from geovr.geometry import unproject_depth

    scene = generate_scene(11, (10, 14))
    H, W = 48, 64
    traj = make_trajectory(scene, 12, (H, W), 11, kind="walk")
    K, E = torch.tensor(traj.intrinsics), torch.tensor(traj.extrinsics)
    out = render(scene, K, E, (H, W), normals=True)
    planar = torch.tensor([True] + [o.shape == "box" for o in scene.objects])[out["ids"].long()]
    checked = visible = 0
    for i, j in ((0, 1), (3, 5), (10, 8)):
        pts = unproject_depth(out["depth"][i][None, None].double(), E[i][None, None], K[i][None, None])[0, 0]
        cam = pts @ E[j, :, :3].T + E[j, :, 3]
        z = cam[..., 2]
        uv = cam[..., :2] / z[..., None] * torch.stack([K[j, 0, 0], K[j, 1, 1]]) + K[j, :2, 2]
        u0, v0 = torch.floor(uv[..., 0]).long(), torch.floor(uv[..., 1]).long()
        ok = (z > 0.1) & (u0 >= 0) & (v0 >= 0) & (u0 < W - 1) & (v0 < H - 1) & planar[i]
        u0, v0, z, uv = u0[ok], v0[ok], z[ok], uv[ok]
        # bilinear interpolation of inverse depth is exact inside one planar face
        inv = 1.0 / out["depth"][j].double()
        nb = [(v0, u0), (v0, u0 + 1), (v0 + 1, u0), (v0 + 1, u0 + 1)]
        same = torch.ones_like(z, dtype=torch.bool)
        for a, b in nb[1:]:
            same &= out["ids"][j][a, b] == out["ids"][j][v0, u0]
            same &= (out["normals"][j][:, a, b] - out["normals"][j][:, v0, u0]).abs().amax(0) < 1e-4
            same &= planar[j][a, b]
        same &= planar[j][v0, u0]
        fu, fv = uv[:, 0] - u0, uv[:, 1] - v0
        interp = (
            (1 - fu) * (1 - fv) * inv[nb[0]]
            + fu * (1 - fv) * inv[nb[1]]
            + (1 - fu) * fv * inv[nb[2]]
            + fu * fv * inv[nb[3]]
        )
        d_j = 1.0 / interp[same]
        rel = (z[same] - d_j) / d_j
        vis = rel.abs() < 1e-4
        # nothing reprojects in front of the surface frame j sees (occluded points lie behind it)
        assert (rel[~vis] > 0).all(), f"points in front of frame {j}'s surface: {rel[~vis].min()}"
        checked += int(same.sum())
        visible += int(vis.sum())
    assert checked > 2000 and visible > 0.5 * checked


def test_render_matches_per_object_reference_loop():
    scene = generate_scene(5, (24, 24))
    traj = make_trajectory(scene, 4, (56, 72), 5)
    fast = render(scene, traj.intrinsics, traj.extrinsics, (56, 72))
    ref = render_reference(scene, traj.intrinsics, traj.extrinsics, (56, 72))
    same = fast["ids"] == ref["ids"]
    assert same.float().mean() > 0.999
    rel = ((fast["depth"] - ref["depth"]).abs() / ref["depth"])[same]
    assert rel.max() < 1e-4
    assert (fast["rgb"] - ref["rgb"]).abs()[same[:, None].expand_as(fast["rgb"])].max() < 1e-3
    assert fast["rgb"].shape == (4, 3, 56, 72) and fast["rgb"].min() >= 0 and fast["rgb"].max() <= 1
    assert fast["rgb"].std() > 0.05  # textured and shaded, not flat


def test_same_seed_identical_bytes_and_different_seed_differs():
    def make(seed):
        scene = generate_scene(seed)
        traj = make_trajectory(scene, 3, (24, 32), seed)
        out = render(scene, traj.intrinsics, traj.extrinsics, (24, 32))
        return scene.to_dict(), traj.extrinsics.tobytes(), out["rgb"].numpy().tobytes(), out["depth"].numpy().tobytes()

    assert make(7) == make(7)
    assert make(7)[2] != make(8)[2]


@pytest.mark.parametrize("seed", range(0, 40, 3))
def test_scene_and_camera_invariants(seed):
    scene = generate_scene(seed, (5, 30))
    room = scene.room
    assert 10 <= room.area <= 60 and 2.5 <= room.height <= 3.0
    assert 5 <= len(scene.objects) <= 30
    floor = [o for o in scene.objects if o.support == 0]
    for o in scene.objects:
        cat = CATEGORIES[o.category]
        assert o.shape == cat.shape
        assert cat.height[0] - 1e-9 <= o.size[2] <= cat.height[1] + 1e-9 or cat.shape == "sphere"
        if o.support == 0:
            assert abs(o.center[2] - o.size[2] / 2) < 1e-9  # rests on the floor
            assert room.contains(o.footprint()).all()
        else:
            sup = scene.objects[o.support - 1]
            assert abs((o.center[2] - o.size[2] / 2) - sup.top) < 1e-9  # rests on its support
            c, s = math.cos(sup.yaw), math.sin(sup.yaw)
            rel = o.footprint() - np.array(sup.center[:2])
            local = rel @ np.array([[c, -s], [s, c]])
            assert (np.abs(local) <= np.array(sup.size[:2]) / 2 + 1e-6).all()
    for a in range(len(floor)):
        for b in range(a + 1, len(floor)):
            assert not rects_overlap(floor[a].footprint(), floor[b].footprint())
    traj = make_trajectory(scene, 8, (30, 40), seed)
    fov = 2 * np.degrees(np.arctan(20 / traj.intrinsics[0, 0, 0]))
    assert 60 - 1e-6 <= fov <= 90 + 1e-6
    assert free_mask(scene, traj.positions[:, :2], 0.14, 0.04).all()
    R = traj.extrinsics[:, :, :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)


def test_catalog_has_twenty_categories_in_practice():
    seen = set()
    for seed in range(30):
        seen |= {o.category for o in generate_scene(seed).objects}
    assert len(seen) >= 20


@pytest.mark.slow
def test_compiled_renderer_matches_eager():
    """``compiled=True`` (torch.compile, ~15-30 s on first use) gives the eager results."""
    scene = generate_scene(9, (12, 12))
    traj = make_trajectory(scene, 3, (16, 32), 9)  # 3 views with chunk 2: exercises the padded last chunk
    eager = render(scene, traj.intrinsics, traj.extrinsics, (16, 32), chunk=2, compiled=False)
    comp = render(scene, traj.intrinsics, traj.extrinsics, (16, 32), chunk=2, compiled=True)
    assert comp["rgb"].shape == (3, 3, 16, 32)
    assert (comp["ids"] == eager["ids"]).float().mean() > 0.999
    rel = (comp["depth"] - eager["depth"]).abs() / eager["depth"]
    assert (rel > 1e-5).float().mean() < 0.002  # float rounding may flip a silhouette pixel
    assert ((comp["rgb"] - eager["rgb"]).abs().amax(1) > 1e-3).float().mean() < 0.01


def test_frame_chunking_does_not_change_output():
    """Frames are independent: the chunk size (default 8 eager) only trades speed, never values."""
    scene = generate_scene(3, (24, 24))
    traj = make_trajectory(scene, 10, (40, 48), 3)
    outs = [render(scene, traj.intrinsics, traj.extrinsics, (40, 48), normals=True, chunk=c) for c in (None, 1, 3)]
    for other in outs[1:]:
        for key in ("rgb", "depth", "ids", "normals"):
            assert torch.equal(outs[0][key], other[key]), key
