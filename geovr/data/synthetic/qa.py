"""VSI-Bench-style spatial questions about a synthetic scene, answered from its exact geometry.

Records carry VSI-Bench's fields ``id, dataset, scene_name, question_type, question, options,
ground_truth`` and conventions: distances in metres between closest points, object size = longest
dimension in centimetres, room size in m², multiple-choice options as ``"A. xxx"`` strings with the
letter as ``ground_truth`` (numerical questions have ``options = None``). Questions about "the X"
only use categories with exactly one instance. Multiple-choice questions whose answer is within a
tolerance of a distractor (distances within 15 cm, directions within 10–15° of a boundary, two
categories first seen in the same frame) are rejected rather than asked.

Questions are asked only about what the video shows: given the instance-id render ``ids [S,H,W]`` of
the frames a record uses, an object is *seen* when it covers at least ``min_pixels`` pixels (and at
least ``min_fraction`` of a frame) in some frame. Every object a question names (targets and
distractor options alike) is seen; counting asks only about categories whose every instance is seen.
Without ``ids`` (hand-built scenes in tests) every object counts as seen.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from geovr.data.configs import QUESTION_TYPES
from geovr.data.synthetic.catalog import CATEGORIES
from geovr.data.synthetic.measure import (
    closest_distance,
    first_appearance,
    longest_dimension,
    pixel_counts,
    signed_angle,
)
from geovr.data.synthetic.scene import Scene, SceneObject

__all__ = ["QUESTION_TYPES", "NUMERICAL_TYPES", "generate_questions", "lettered"]
NUMERICAL_TYPES = frozenset(
    {"object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation"}
)
DATASET = "synthetic_rooms"
LETTERS = "ABCDEFGH"
DIST_TOL = 0.15  # m: closest vs. second closest in object_rel_distance
ANGLE_TOL = 12.0  # degrees from a direction boundary


def lettered(options: list[str]) -> list[str]:
    """``["chair", "bed"]`` → ``["A. chair", "B. bed"]``."""
    return [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]


class _Ctx:
    """Question context: ``groups`` are the categories whose instances are all seen, ``unique`` the
    seen categories with exactly one instance in the whole scene (so "the X" is unambiguous)."""

    def __init__(self, scene: Scene, rng: np.random.Generator, seen: set[int] | None = None):
        self.scene, self.rng = scene, rng
        groups = scene.by_category()
        visible = (lambda o: True) if seen is None else (lambda o: o.id in seen)
        self.unique = {c: objs[0] for c, objs in groups.items() if len(objs) == 1 and visible(objs[0])}
        self.groups = {c: objs for c, objs in groups.items() if all(visible(o) for o in objs)}
        self._dist: dict[tuple[int, int], float] = {}
        self.counts: np.ndarray | None = None  # pixel counts per frame and id (set when an id video is given)

    def dist(self, a: SceneObject, b: SceneObject) -> float:
        key = (min(a.id, b.id), max(a.id, b.id))
        if key not in self._dist:
            self._dist[key] = closest_distance(a, b)
        return self._dist[key]

    def pick(self, k: int) -> list[SceneObject] | None:
        names = sorted(self.unique)
        if len(names) < k:
            return None
        return [self.unique[names[i]] for i in self.rng.choice(len(names), size=k, replace=False)]

    def mc(self, correct: str, distractors: list[str]) -> tuple[list[str], str]:
        opts = [correct, *distractors]
        order = self.rng.permutation(len(opts))
        opts = [opts[i] for i in order]
        return lettered(opts), LETTERS[opts.index(correct)]


def _xy(o: SceneObject) -> np.ndarray:
    return np.asarray(o.center[:2], dtype=float)


def _counting(ctx):
    many = [c for c, objs in ctx.groups.items() if len(objs) >= 2]
    if not many:
        return None
    cat = many[int(ctx.rng.integers(len(many)))]
    return (f"How many {CATEGORIES[cat].plural_name} are there in this room?", None, str(len(ctx.groups[cat])))


def _abs_distance(ctx):
    pair = ctx.pick(2)
    if pair is None or ctx.dist(*pair) < 0.3:
        return None
    a, b = pair
    return (
        f"What is the distance in metres between the {a.category} and the {b.category}, measured between "
        f"their closest points?",
        None,
        f"{ctx.dist(a, b):.1f}",
    )


def _size(ctx):
    one = ctx.pick(1)
    if one is None:
        return None
    o = one[0]
    return (
        f"How long is the longest side (length, width or height) of the {o.category}, in centimetres?",
        None,
        str(int(round(longest_dimension(o) * 100))),
    )


def _room_size(ctx):
    return ("What is the floor area of this room in square metres?", None, f"{ctx.scene.room.area:.1f}")


def _rel_distance(ctx):
    objs = ctx.pick(5)
    if objs is None:
        return None
    target, cands = objs[0], objs[1:]
    d = sorted((ctx.dist(target, c), c.category) for c in cands)
    if d[1][0] - d[0][0] < DIST_TOL:
        return None
    opts, gt = ctx.mc(d[0][1], [c for _, c in d[1:]])
    names = ", ".join(c.category for c in cands)
    return (f"Which of these objects is closest to the {target.category} (closest points): {names}?", opts, gt)


def _direction(ctx, level):
    objs = ctx.pick(3)
    if objs is None:
        return None
    pos, ori, qry = objs
    fwd, to_q = _xy(ori) - _xy(pos), _xy(qry) - _xy(pos)
    if np.linalg.norm(fwd) < 0.5 or np.linalg.norm(to_q) < 0.5:
        return None
    ang = signed_angle(fwd, to_q)
    a = abs(ang)
    stem = f"Standing at the {pos.category} and facing the {ori.category}, "
    if level == "easy":
        if a < 15 or a > 165:
            return None
        options, answer = ["left", "right"], ("left" if ang > 0 else "right")
        q = stem + f"is the {qry.category} on my left or on my right?"
    elif level == "medium":
        if a < ANGLE_TOL or abs(a - 135) < ANGLE_TOL:
            return None
        options, answer = ["left", "right", "back"], ("back" if a > 135 else "left" if ang > 0 else "right")
        q = stem + (
            f"is the {qry.category} on my left, on my right, or behind me? Behind means I would "
            f"have to turn more than 135 degrees to face it."
        )
    else:
        if min(a, abs(a - 90), 180 - a) < ANGLE_TOL:
            return None
        options = ["front-left", "front-right", "back-left", "back-right"]
        answer = ("front" if a < 90 else "back") + ("-left" if ang > 0 else "-right")
        q = stem + (
            f"in which quadrant is the {qry.category}: front-left, front-right, back-left or "
            f"back-right? Quadrants are those of a plane with me at the origin facing along +y."
        )
    return q, lettered(options), LETTERS[options.index(answer)]


def _turn(prev: np.ndarray, nxt: np.ndarray) -> str | None:
    ang = signed_angle(prev, nxt)
    a = abs(ang)
    if a < 45 + ANGLE_TOL or abs(a - 135) < ANGLE_TOL:
        return None
    return "Turn Back" if a > 135 else "Turn Left" if ang > 0 else "Turn Right"


def _route(ctx):
    n_turns = 1 + int(ctx.rng.integers(2))
    objs = ctx.pick(n_turns + 2)
    if objs is None:
        return None
    pts = [_xy(o) for o in objs]
    legs = [pts[i + 1] - pts[i] for i in range(len(pts) - 1)]
    if min(np.linalg.norm(v) for v in legs) < 0.6:
        return None
    turns = [t for i in range(n_turns) if (t := _turn(legs[i], legs[i + 1])) is not None]
    if len(turns) < n_turns:
        return None
    steps, k = [f"1. Go forward until the {objs[1].category}."], 2
    for i in range(n_turns):
        steps += [f"{k}. [please fill in]", f"{k + 1}. Go forward until the {objs[i + 2].category}."]
        k += 2
    q = (
        f"You are a robot starting at the {objs[0].category} and facing the {objs[1].category}, and you "
        f"want to reach the {objs[-1].category}. Fill in each [please fill in] with 'Turn Left', 'Turn "
        f"Right' or 'Turn Back': " + " ".join(steps) + " You have arrived."
    )
    correct = ", ".join(turns)
    combos = [", ".join(c) for c in itertools.product(("Turn Left", "Turn Right", "Turn Back"), repeat=n_turns)]
    others = [c for c in combos if c != correct]
    pick = [others[i] for i in ctx.rng.choice(len(others), size=min(3, len(others)), replace=False)]
    opts, gt = ctx.mc(correct, pick)
    return q, opts, gt


def _appearance(ctx, ids, min_pixels):
    if ids is None or len(ctx.unique) < 4:
        return None
    first = first_appearance(ids, [o.id for o in ctx.unique.values()], min_pixels, counts=ctx.counts)
    by_frame: dict[int, list[str]] = {}
    for c, o in ctx.unique.items():
        if o.id in first:
            by_frame.setdefault(first[o.id], []).append(c)
    # one category per first frame (chosen at random), so the four asked about never tie; ties with
    # categories not asked about do not matter
    distinct = [cs[int(ctx.rng.integers(len(cs)))] for f, cs in sorted(by_frame.items())]
    if len(distinct) < 4:
        return None
    chosen = sorted(ctx.rng.choice(len(distinct), size=4, replace=False))
    order = [distinct[i] for i in chosen]
    perms = [p for p in itertools.permutations(order) if list(p) != order]
    pick = [", ".join(perms[i]) for i in ctx.rng.choice(len(perms), size=3, replace=False)]
    opts, gt = ctx.mc(", ".join(order), pick)
    listed = ", ".join(sorted(order))
    return f"In which order do these categories first appear in the video: {listed}?", opts, gt


def seen_objects(ids, object_ids, min_pixels: int = 4, min_fraction: float = 0.0, counts=None) -> set[int]:
    """Instance ids among ``object_ids`` covering ``>= max(min_pixels, min_fraction·H·W)`` pixels of
    some frame of the instance-id video ``ids [S,H,W]``."""
    ids = np.asarray(ids)
    need = max(int(min_pixels), int(math.ceil(min_fraction * ids.shape[-1] * ids.shape[-2])))
    return set(first_appearance(ids, object_ids, need, counts=counts))


def generate_questions(
    scene: Scene,
    ids=None,
    *,
    seed: int = 0,
    question_types=QUESTION_TYPES,
    per_type: int = 1,
    attempts: int = 20,
    min_pixels: int = 4,
    min_fraction: float = 0.001,
) -> list[dict]:
    """Questions about ``scene`` (up to ``per_type`` of each type, deterministic in ``seed``).

    ``ids``: instance-id video ``[S,H,W]`` of the frames the record uses: only objects seen in them
    (``>= max(min_pixels, min_fraction·H·W)`` pixels in some frame) are asked about, and
    ``obj_appearance_order`` needs it (skipped without it). ``id`` counts from 0 within the scene.
    """
    unknown = set(question_types) - set(QUESTION_TYPES)
    if unknown:
        raise ValueError(f"unknown question types {sorted(unknown)}; expected some of {QUESTION_TYPES}")
    visible = counts = None
    if ids is not None:
        ids = np.asarray(ids)
        counts = pixel_counts(ids)
        visible = seen_objects(ids, [o.id for o in scene.objects], min_pixels, min_fraction, counts=counts)
        min_pixels = max(int(min_pixels), int(math.ceil(min_fraction * ids.shape[-1] * ids.shape[-2])))
    records: list[dict] = []
    for t_index, qtype in enumerate(QUESTION_TYPES):
        if qtype not in question_types:
            continue
        ctx = _Ctx(scene, np.random.default_rng([int(seed), int(scene.seed), t_index]), visible)
        ctx.counts = counts
        asked: set[str] = set()
        for _ in range(attempts if qtype != "room_size_estimation" else 1):
            if len(asked) >= per_type:
                break
            if qtype.startswith("object_rel_direction_"):
                res = _direction(ctx, qtype.rsplit("_", 1)[1])
            elif qtype == "obj_appearance_order":
                res = _appearance(ctx, ids, min_pixels)
            else:
                res = {
                    "object_counting": _counting,
                    "object_abs_distance": _abs_distance,
                    "object_size_estimation": _size,
                    "room_size_estimation": _room_size,
                    "object_rel_distance": _rel_distance,
                    "route_planning": _route,
                }[qtype](ctx)
            if res is None or res[0] in asked:
                continue
            asked.add(res[0])
            question, options, answer = res
            records.append(
                {
                    "id": len(records),
                    "dataset": DATASET,
                    "scene_name": scene.name,
                    "question_type": qtype,
                    "question": question,
                    "options": options,
                    "ground_truth": answer,
                }
            )
    return records
