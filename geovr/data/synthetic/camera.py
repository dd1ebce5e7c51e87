"""Egocentric camera trajectories through a :class:`~geovr.data.synthetic.scene.Scene` (numpy).

Conventions (OpenCV, as everywhere in geovr): intrinsics ``K [S,3,3]`` in pixels with the principal
point at the image centre ``(W/2, H/2)``; extrinsics ``[S,3,4]`` world-to-camera ``[R | t]`` with
camera axes x right, y down, z forward. The world is z-up (see :mod:`geovr.data.synthetic.scene`).

Trajectory kinds: ``"walk"`` (a walk through free space along a polyline, looking around),
``"orbit"`` (an arc around the room centre, looking inwards) and ``"pan"`` (standing still, turning).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from geovr.data.synthetic.scene import Scene

KINDS = ("walk", "orbit", "pan")


@attrs.define
class Trajectory:
    """``kind``; ``intrinsics [S,3,3]``, ``extrinsics [S,3,4]`` (float64); ``positions [S,3]`` camera
    centres in the world; ``fov_w`` horizontal field of view in degrees."""

    kind: str
    intrinsics: np.ndarray
    extrinsics: np.ndarray
    positions: np.ndarray
    fov_w: float


def intrinsics_from_fov(fov_w_deg: float, height: int, width: int) -> np.ndarray:
    """Pinhole ``K [3,3]`` with square pixels, horizontal FoV ``fov_w_deg`` and centre ``(W/2, H/2)``."""
    f = (width / 2) / math.tan(math.radians(fov_w_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def camera_extrinsics(position, yaw: float, pitch: float) -> np.ndarray:
    """World-to-camera ``[3,4]`` for a camera at ``position`` (3,) looking along heading ``yaw``
    (radians, from +x towards +y) tilted up by ``pitch`` (radians; negative looks down), no roll."""
    fwd = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(fwd, right)
    rot = np.stack([right, down, fwd])  # rows: camera axes in world coordinates
    return np.concatenate([rot, -(rot @ np.asarray(position, dtype=float))[:, None]], axis=1)


def free_mask(scene: Scene, xy: np.ndarray, wall_margin: float = 0.35, object_margin: float = 0.25) -> np.ndarray:
    """Bool mask over points ``[N,2]``: inside the room and clear of every floor object's footprint."""
    ok = scene.room.contains(xy, wall_margin)
    floor = [o for o in scene.objects if not o.support]
    if not floor:
        return ok
    # all floor objects at once ([N, objects]); the same element-wise operations as one object at a time
    c = np.array([math.cos(o.yaw) for o in floor])
    s = np.array([math.sin(o.yaw) for o in floor])
    centers = np.array([o.center[:2] for o in floor], dtype=float)
    hx = np.array([o.size[0] / 2 + object_margin for o in floor])
    hy = np.array([o.size[1] / 2 + object_margin for o in floor])
    dx, dy = xy[:, 0, None] - centers[:, 0], xy[:, 1, None] - centers[:, 1]
    lx, ly = dx * c + dy * s, -dx * s + dy * c
    return ok & ~((np.abs(lx) < hx) & (np.abs(ly) < hy)).any(1)


def _free_points(scene: Scene) -> np.ndarray:
    xs = np.arange(0.05, scene.room.length, 0.1)
    ys = np.arange(0.05, scene.room.width, 0.1)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    for wall, obj in ((0.35, 0.25), (0.25, 0.15), (0.15, 0.05)):
        pts = grid[free_mask(scene, grid, wall, obj)]
        if len(pts):
            return pts
    return grid[scene.room.contains(grid, 0.05)]


def _path_free(scene: Scene, a: np.ndarray, b: np.ndarray) -> bool:
    n = max(2, int(np.linalg.norm(b - a) / 0.1) + 1)
    pts = a[None] + np.linspace(0, 1, n)[:, None] * (b - a)[None]
    return bool(free_mask(scene, pts).all())


def _walk(scene, rng, free, S):
    for _ in range(40):
        k = int(rng.integers(3, 5))
        way = [free[int(rng.integers(len(free)))]]
        for _j in range(k - 1):
            cands = free[rng.choice(len(free), size=min(30, len(free)), replace=False)]
            dists = np.linalg.norm(cands - way[-1], axis=1)
            order = np.argsort(-dists)
            nxt = next((cands[i] for i in order if dists[i] > 1.0 and _path_free(scene, way[-1], cands[i])), None)
            if nxt is None:
                break
            way.append(nxt)
        if len(way) < 2:
            continue
        path = np.array(way)
        seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
        cum = np.concatenate([[0], np.cumsum(seg)])
        tau = np.linspace(0, cum[-1], S)
        xy = np.stack([np.interp(tau, cum, path[:, 0]), np.interp(tau, cum, path[:, 1])], -1)
        ahead = np.stack(
            [
                np.interp(np.minimum(tau + 0.6, cum[-1]), cum, path[:, 0]),
                np.interp(np.minimum(tau + 0.6, cum[-1]), cum, path[:, 1]),
            ],
            -1,
        )
        heading = np.arctan2(ahead[:, 1] - xy[:, 1], ahead[:, 0] - xy[:, 0])
        heading[-1] = heading[-2] if S > 1 else heading[-1]
        heading = np.unwrap(heading)
        phase = rng.uniform(0, 2 * math.pi)
        yaw = heading + math.radians(rng.uniform(30, 50)) * np.sin(np.linspace(0, 4 * math.pi, S) + phase)
        return xy, yaw
    return None


def _orbit(scene, rng, free, S):
    for _ in range(40):
        center = free[int(rng.integers(len(free)))]
        radius = rng.uniform(0.4, 1.6)
        start, sweep = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(200, 360))
        a = start + np.linspace(0, sweep, max(S, 48))
        arc = center[None] + radius * np.stack([np.cos(a), np.sin(a)], -1)
        if free_mask(scene, arc).all():
            a = start + np.linspace(0, sweep, S)
            xy = center[None] + radius * np.stack([np.cos(a), np.sin(a)], -1)
            yaw = a + math.pi + math.radians(rng.uniform(-20, 20))  # look inwards, slightly off-centre
            return xy, yaw
    return None


def _pan(scene, rng, free, S):
    room = scene.room
    clearance = np.minimum.reduce([free[:, 0], room.length - free[:, 0], free[:, 1], room.width - free[:, 1]])
    best = free[clearance >= np.quantile(clearance, 0.7)]  # stand in the open part of the room
    p = best[int(rng.integers(len(best)))]
    start, sweep = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(220, 340))
    return np.repeat(p[None], S, 0), start + np.linspace(0, sweep, S) * (1 if rng.random() < 0.5 else -1)


def path_frames(num_frames: int, span: float = 1.0) -> int:
    """Frames of the whole camera path of which a clip of ``num_frames`` covering ``span`` (0 < span ≤ 1)
    of it is the start: ``num_frames`` for ``span = 1``, else ``round((num_frames − 1) / span) + 1``."""
    if not 0 < span <= 1:
        raise ValueError(f"span must be in (0, 1], got {span!r}")
    return int(num_frames) if span == 1 else max(int(num_frames), round((int(num_frames) - 1) / span) + 1)


def make_trajectory(
    scene: Scene, num_frames: int, image_size: tuple[int, int], seed: int, kind: str | None = None, span: float = 1.0
) -> Trajectory:
    """Camera path of ``num_frames`` views of ``scene`` for images ``image_size = (H, W)``.

    ``kind`` is one of :data:`KINDS` (random when ``None``; an orbit falls back to a walk and a walk to
    a pan when the room has no space for it). Deterministic in ``seed``; horizontal FoV 60–90°, eye height 1.35–1.65 m.
    ``span`` (0 < span ≤ 1): the fraction of the path the views cover, from its start — the path is laid
    out for :func:`path_frames` views and the first ``num_frames`` are kept, so a smaller span gives
    closer, overlapping consecutive views (a short excerpt of the walk, orbit or pan); 1 = the whole path.
    """
    rng = np.random.default_rng([int(seed), 0xCA3E7A])
    H, W = image_size
    full = path_frames(num_frames, span)
    free = _free_points(scene)
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    if kind not in KINDS:
        raise ValueError(f"unknown trajectory kind {kind!r}; expected one of {KINDS}")
    res = {"walk": _walk, "orbit": _orbit, "pan": _pan}[kind](scene, rng, free, full)
    if res is None and kind == "orbit":
        kind, res = "walk", _walk(scene, rng, free, full)
    if res is None:
        kind, res = "pan", _pan(scene, rng, free, full)
    xy, yaw = res[0][:num_frames], res[1][:num_frames]
    eye = rng.uniform(1.35, 1.65)
    pitch = (math.radians(rng.uniform(-25, -10)) + math.radians(5) * np.sin(np.linspace(0, 2 * math.pi, full)))[
        :num_frames
    ]
    fov_w = float(rng.uniform(60, 90))
    pos = np.concatenate([xy, np.full((num_frames, 1), eye)], axis=1)
    ext = np.stack([camera_extrinsics(pos[i], float(yaw[i]), float(pitch[i])) for i in range(num_frames)])
    K = np.repeat(intrinsics_from_fov(fov_w, H, W)[None], num_frames, 0)
    return Trajectory(kind, K, ext, pos, fov_w)
