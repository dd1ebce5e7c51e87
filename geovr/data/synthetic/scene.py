"""Seeded procedural rooms (torch-free, numpy only).

World frame: metres, ``z`` up, floor at ``z = 0``; a room spans ``[0, length] × [0, width]`` in x/y and
``[0, height]`` in z. An L-shaped room removes an axis-aligned corner rectangle (the *notch*, a solid
block from floor to ceiling). Objects are single primitives (oriented box, vertical cylinder, sphere)
rotated by ``yaw`` about ``z``; ``center`` is the primitive's centre and ``size`` its full extents
``(length, width, height)`` along its local axes. Instance ids run 1..N (0 = room structure).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from geovr.data.configs import WALLS  # "uniform" (every wall in the room's colour) or "compass" (COMPASS_HUES)
from geovr.data.synthetic.catalog import CATEGORIES, FLOOR_CATEGORIES, SURFACE_CATEGORIES

WALL_COLORS = ((0.86, 0.84, 0.78), (0.78, 0.84, 0.88), (0.9, 0.82, 0.75), (0.8, 0.86, 0.78), (0.88, 0.88, 0.9))
FLOOR_COLORS = ((0.55, 0.42, 0.3), (0.45, 0.45, 0.48), (0.7, 0.6, 0.45), (0.35, 0.3, 0.28), (0.62, 0.55, 0.5))
#: Hues of the four walls ``x = 0``, ``x = length``, ``y = 0``, ``y = width`` under ``walls = "compass"``:
#: the same in every room, so a single view shows which way the camera faces.
COMPASS_HUES = ((0.85, 0.35, 0.3), (0.3, 0.45, 0.85), (0.35, 0.7, 0.35), (0.85, 0.75, 0.3))


@attrs.define
class Room:
    """Rectangular room ``[0,length]×[0,width]×[0,height]`` minus an optional corner ``notch``
    ``(x0, y0, x1, y1)``; colours are RGB in [0,1]. ``wall_colors``: one colour per wall plane
    ``x = 0``, ``x = length``, ``y = 0``, ``y = width`` (``None``: all four in ``wall_color``)."""

    length: float
    width: float
    height: float
    notch: tuple[float, float, float, float] | None = None
    wall_color: tuple[float, float, float] = WALL_COLORS[0]
    floor_color: tuple[float, float, float] = FLOOR_COLORS[0]
    ceiling_color: tuple[float, float, float] = (0.95, 0.95, 0.95)
    wall_colors: tuple[tuple[float, float, float], ...] | None = None

    def plane_wall_colors(self) -> list[tuple[float, float, float]]:
        """The colours of the four wall planes (``x = 0``, ``x = length``, ``y = 0``, ``y = width``)."""
        return list(self.wall_colors) if self.wall_colors else [self.wall_color] * 4

    @property
    def area(self) -> float:
        """Floor area in m² (bounding rectangle minus the notch)."""
        a = self.length * self.width
        if self.notch is not None:
            x0, y0, x1, y1 = self.notch
            a -= (x1 - x0) * (y1 - y0)
        return a

    def contains(self, xy, margin: float = 0.0) -> np.ndarray:
        """Bool mask: points ``[...,2]`` inside the floor at least ``margin`` from every wall."""
        xy = np.asarray(xy, dtype=float)
        x, y = xy[..., 0], xy[..., 1]
        ok = (x >= margin) & (x <= self.length - margin) & (y >= margin) & (y <= self.width - margin)
        if self.notch is not None:
            x0, y0, x1, y1 = self.notch
            ok &= ~((x > x0 - margin) & (x < x1 + margin) & (y > y0 - margin) & (y < y1 + margin))
        return ok


@attrs.define
class SceneObject:
    """One object: ``id`` ≥ 1, ``category`` (see :data:`CATEGORIES`), ``shape``, ``center`` (3,),
    ``size`` (3,) full extents, ``yaw`` radians, ``color`` RGB, ``pattern`` texture code (0–3),
    ``support`` id of the object it rests on (0 = floor)."""

    id: int
    category: str
    shape: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0
    color: tuple[float, float, float] = (0.6, 0.6, 0.6)
    pattern: int = 0
    support: int = 0

    @property
    def top(self) -> float:
        return self.center[2] + self.size[2] / 2

    def footprint(self) -> np.ndarray:
        """Corners ``[4,2]`` of the object's (oriented) floor footprint."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        hx, hy = self.size[0] / 2, self.size[1] / 2
        local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
        rot = np.array([[c, -s], [s, c]])
        return local @ rot.T + np.asarray(self.center[:2])


@attrs.define
class Scene:
    """A room with objects; ``name`` identifies it (file names, ``scene_name`` of questions)."""

    name: str
    room: Room
    objects: list[SceneObject]
    seed: int = 0

    def to_dict(self) -> dict:
        """JSON-ready dict (inverse: :meth:`from_dict`)."""
        return attrs.asdict(self, recurse=True)

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        room = d["room"]
        walls = room.get("wall_colors")
        room = Room(
            **{
                **room,
                "notch": tuple(room["notch"]) if room.get("notch") else None,
                "wall_colors": tuple(tuple(c) for c in walls) if walls else None,
            }
        )
        objs = [
            SceneObject(**{**o, "center": tuple(o["center"]), "size": tuple(o["size"]), "color": tuple(o["color"])})
            for o in d["objects"]
        ]
        return cls(name=d["name"], room=room, objects=objs, seed=d.get("seed", 0))

    def by_category(self) -> dict[str, list[SceneObject]]:
        """Objects grouped by category (sorted by name)."""
        out: dict[str, list[SceneObject]] = {}
        for o in self.objects:
            out.setdefault(o.category, []).append(o)
        return dict(sorted(out.items()))


def rects_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Separating-axis test of two convex quads ``[4,2]`` (``margin`` widens the gap needed)."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]]) / (np.hypot(*edge) + 1e-12)
            pa, pb = a @ axis, b @ axis
            if pa.max() + margin <= pb.min() or pb.max() + margin <= pa.min():
                return False
    return True


def _quad_inside(room: Room, quad: np.ndarray, margin: float) -> bool:
    if not room.contains(quad, margin).all():
        return False
    if room.notch is not None:  # a quad may straddle the notch corner with all corners outside it
        x0, y0, x1, y1 = room.notch
        notch = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        if rects_overlap(quad, notch, margin):
            return False
    return True


def _sample_size(rng: np.random.Generator, cat) -> tuple[float, float, float]:
    if cat.shape == "box":
        length, width, height = (float(rng.uniform(*r)) for r in (cat.length, cat.width, cat.height))
        return length, width, height
    d = float(rng.uniform(*cat.length))
    return (d, d, d) if cat.shape == "sphere" else (d, d, float(rng.uniform(*cat.height)))


def _sample_room(rng: np.random.Generator) -> Room:
    while True:
        length, width = rng.uniform(3.2, 8.5), rng.uniform(3.2, 8.0)
        notch: tuple[float, float, float, float] | None = None
        if rng.random() < 0.35:
            nx, ny = length * rng.uniform(0.3, 0.45), width * rng.uniform(0.3, 0.45)
            corner = int(rng.integers(4))
            x0 = 0.0 if corner in (0, 3) else length - nx
            y0 = 0.0 if corner in (0, 1) else width - ny
            notch = (round(x0, 4), round(y0, 4), round(x0 + nx, 4), round(y0 + ny, 4))
        room = Room(
            round(float(length), 4),
            round(float(width), 4),
            round(float(rng.uniform(2.5, 3.0)), 4),
            notch,
            WALL_COLORS[int(rng.integers(len(WALL_COLORS)))],
            FLOOR_COLORS[int(rng.integers(len(FLOOR_COLORS)))],
        )
        if 10.0 <= room.area <= 60.0:
            return room


def compass_walls(wall_color) -> tuple[tuple[float, float, float], ...]:
    """The four wall colours of ``walls = "compass"``: each :data:`COMPASS_HUES` entry mixed half and half
    with the room's ``wall_color``."""
    return tuple(
        tuple(round(0.5 * a + 0.5 * b, 4) for a, b in zip(hue, wall_color, strict=True)) for hue in COMPASS_HUES
    )


def generate_scene(
    seed: int,
    num_objects: tuple[int, int] = (8, 24),
    name: str | None = None,
    max_tries: int = 60,
    walls: str = "uniform",
) -> Scene:
    """A random room with ``num_objects`` (inclusive range, within 5–30 recommended) objects.

    Deterministic in ``seed``. Floor objects do not overlap (10 cm gap) and stay inside the walls;
    surface objects rest on top of a supporting object (table, desk, bed, cabinet, nightstand).
    ``walls`` (:data:`WALLS`): ``"compass"`` paints each wall its own fixed hue (:func:`compass_walls`);
    the room, objects and everything else drawn from ``seed`` are the same either way.
    """
    if walls not in WALLS:
        raise ValueError(f"walls must be one of {WALLS}, got {walls!r}")
    rng = np.random.default_rng([int(seed), 0x5CE7E])
    room = _sample_room(rng)
    if walls == "compass":
        room.wall_colors = compass_walls(room.wall_color)
    target = int(rng.integers(num_objects[0], num_objects[1] + 1))
    objects: list[SceneObject] = []
    floor_quads: list[np.ndarray] = []
    on_top: dict[int, list[np.ndarray]] = {}
    footprint_area = 0.0
    for _ in range(target * 8):
        if len(objects) >= target:
            break
        supports = [o for o in objects if CATEGORIES[o.category].support]
        use_surface = supports and rng.random() < 0.3
        names = SURFACE_CATEGORIES if use_surface else FLOOR_CATEGORIES
        cat = CATEGORIES[names[int(rng.integers(len(names)))]]
        size = _sample_size(rng, cat)
        red, green, blue = (float(np.clip(c + rng.uniform(-0.08, 0.08), 0, 1)) for c in cat.color)
        color = (red, green, blue)
        pattern = int(rng.integers(4))
        placed = None
        for _try in range(max_tries if not use_surface else 12):
            if use_surface:
                sup = supports[int(rng.integers(len(supports)))]
                yaw = sup.yaw + (math.pi / 2) * int(rng.integers(2))
                half = np.array(sup.size[:2]) / 2 - np.abs(
                    np.array(
                        [
                            [math.cos(yaw - sup.yaw), math.sin(yaw - sup.yaw)],
                            [math.sin(yaw - sup.yaw), math.cos(yaw - sup.yaw)],
                        ]
                    )
                ) @ (np.array(size[:2]) / 2)
                if (half < 0.02).any():
                    continue
                local = rng.uniform(-half, half)
                c, s = math.cos(sup.yaw), math.sin(sup.yaw)
                xy = np.array(sup.center[:2]) + np.array([c * local[0] - s * local[1], s * local[0] + c * local[1]])
                cand = SceneObject(
                    len(objects) + 1,
                    cat.name,
                    cat.shape,
                    (float(xy[0]), float(xy[1]), sup.top + size[2] / 2),
                    size,
                    yaw,
                    color,
                    pattern,
                    sup.id,
                )
                quad = cand.footprint()
                if any(rects_overlap(quad, q, 0.03) for q in on_top.get(sup.id, [])):
                    continue
                on_top.setdefault(sup.id, []).append(quad)
                placed = cand
                break
            yaw = (math.pi / 2) * int(rng.integers(4)) if rng.random() < 0.7 else float(rng.uniform(-math.pi, math.pi))
            xy = rng.uniform([0.0, 0.0], [room.length, room.width])
            cand = SceneObject(
                len(objects) + 1,
                cat.name,
                cat.shape,
                (float(xy[0]), float(xy[1]), size[2] / 2),
                size,
                float(yaw),
                color,
                pattern,
                0,
            )
            quad = cand.footprint()
            if not _quad_inside(room, quad, 0.05) or any(rects_overlap(quad, q, 0.1) for q in floor_quads):
                continue
            if footprint_area + size[0] * size[1] > 0.4 * room.area:  # leave room to walk
                break
            floor_quads.append(quad)
            footprint_area += size[0] * size[1]
            placed = cand
            break
        if placed is not None:
            objects.append(placed)
    return Scene(name or f"synth_{int(seed):06d}", room, objects, int(seed))
