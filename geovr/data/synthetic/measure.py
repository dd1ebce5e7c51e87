"""Exact measurements on scene objects used as question answers (numpy, torch-free).

Distances follow VSI-Bench's convention: between the *closest points* of two objects. For two
disjoint convex primitives the closest pair is found by alternating projections (each step projects
onto one primitive; the distance decreases monotonically to the minimum).
"""

from __future__ import annotations

import math

import numpy as np

from geovr.data.synthetic.scene import SceneObject


def project(obj: SceneObject, p: np.ndarray) -> np.ndarray:
    """The point of ``obj`` (a solid primitive) closest to ``p`` (3,)."""
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    d = np.asarray(p, dtype=float) - np.asarray(obj.center)
    local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2]])
    half = np.asarray(obj.size) / 2
    if obj.shape == "box":
        q = np.clip(local, -half, half)
    elif obj.shape == "cylinder":
        r = math.hypot(local[0], local[1])
        k = min(1.0, half[0] / r) if r > 0 else 1.0
        q = np.array([local[0] * k, local[1] * k, np.clip(local[2], -half[2], half[2])])
    else:
        r = float(np.linalg.norm(local))
        q = local * min(1.0, half[0] / r) if r > 0 else local
    return np.array([c * q[0] - s * q[1], s * q[0] + c * q[1], q[2]]) + np.asarray(obj.center)


def closest_distance(a: SceneObject, b: SceneObject, iters: int = 200, tol: float = 1e-7) -> float:
    """Distance in metres between the closest points of ``a`` and ``b`` (0 when they touch)."""
    y = project(b, np.asarray(a.center, dtype=float))
    prev = math.inf
    for _ in range(iters):
        x = project(a, y)
        y = project(b, x)
        dist = float(np.linalg.norm(x - y))
        if prev - dist < tol:
            break
        prev = dist
    return dist


def longest_dimension(obj: SceneObject) -> float:
    """Longest of length/width/height in metres."""
    return float(max(obj.size))


def signed_angle(forward: np.ndarray, target: np.ndarray) -> float:
    """Angle in degrees from 2-D ``forward`` to ``target`` seen from above: positive = to the left
    (counter-clockwise in the z-up world), in (-180, 180]."""
    return math.degrees(
        math.atan2(forward[0] * target[1] - forward[1] * target[0], forward[0] * target[0] + forward[1] * target[1])
    )


def pixel_counts(ids) -> np.ndarray:
    """Pixels per instance id and frame: ``ids [S,H,W]`` (non-negative ints) → ``[S, max_id+1]``."""
    ids = np.asarray(ids)
    S = ids.shape[0]
    flat = ids.reshape(S, -1).astype(np.int64)
    n = int(flat.max()) + 1 if flat.size else 1
    return np.bincount((flat + np.arange(S)[:, None] * n).ravel(), minlength=S * n).reshape(S, n)


def first_appearance(ids, object_ids, min_pixels: int = 4, counts: np.ndarray | None = None) -> dict[int, int]:
    """First frame index at which each instance id covers ``>= min_pixels`` pixels of the instance-id
    video ``ids [S,H,W]`` (objects never seen are absent from the result). ``counts``: the
    :func:`pixel_counts` of ``ids`` when already computed."""
    counts = pixel_counts(ids) if counts is None else counts
    out = {}
    for oid in object_ids:
        if 0 <= oid < counts.shape[1]:
            seen = np.nonzero(counts[:, oid] >= min_pixels)[0]
            if len(seen):
                out[int(oid)] = int(seen[0])
    return out
