"""Vectorised torch ray caster for synthetic scenes: RGB, metric depth, instance ids, normals.

Every pixel ``(u, v)`` (column, row; pixel centres at integers, as in :mod:`geovr.geometry`) shoots the
ray ``X(t) = C + t · R_c2w K⁻¹ [u, v, 1]ᵀ``; because the direction is not normalised, ``t`` *is* the
depth along the optical axis (the ``z`` of the camera frame), which is what the renderer returns.

Speed comes from three things:

* **inverse depth is linear in the pixel** for a plane: the hit of a ray with the plane ``x_a = c``
  has ``1/t = d_a(u,v) / (c − o_a)`` and ``d`` is linear in ``(u, v)``. Boxes (slab test) and the room
  (exit through 6 planes) therefore reduce to a few linear forms per tile followed by min/max;
  cylinders and spheres solve their quadratic directly in inverse depth (no per-pixel division);
* **screen-space culling**: each object's projected bounding box selects the 16×16 tiles it can touch,
  a corner test on the (linear) slab forms drops box/tile pairs that certainly miss, and only the
  remaining (tile, object) pairs are tested, in cache-sized blocks;
* a z-buffer in inverse depth merged with ``scatter_reduce(amax)`` over all pairs of all frames.

Shading lives in :mod:`.shading`; :func:`geovr.data.synthetic.reference.render_reference` is the plain
per-object loop over full frames used to check and benchmark :func:`render`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor

from geovr.data.synthetic.scene import Scene
from geovr.data.synthetic.shading import shade

SHAPE_CODES = {"box": 0, "cylinder": 1, "sphere": 2}
NEAR = 0.02


@attrs.define
class SceneTensors:
    """Per-primitive tables (``N`` = objects + the L-notch block if any), float64 geometry.

    center ``[N,3]``, half ``[N,3]`` half extents, cos/sin ``[N]`` of yaw, shape ``[N]`` (0 box,
    1 cylinder, 2 sphere), color ``[N,3]``, pattern ``[N]`` (-1 = wall texture), ids ``[N]`` public
    instance ids (0 for the notch), bounds ``(length, width, height)``, room colours ``[6,3]``
    by plane (walls x=0, x=L, y=0, y=W, floor, ceiling)."""

    center: Tensor
    half: Tensor
    cos: Tensor
    sin: Tensor
    shape: Tensor
    color: Tensor
    pattern: Tensor
    ids: Tensor
    bounds: tuple[float, float, float]
    room_colors: Tensor


def scene_tensors(scene: Scene) -> SceneTensors:
    """Pack ``scene`` for rendering (the L-notch becomes a wall-textured box with id 0)."""
    rows = [
        (o.center, [s / 2 for s in o.size], o.yaw, SHAPE_CODES[o.shape], o.color, o.pattern, o.id)
        for o in scene.objects
    ]
    r = scene.room
    if r.notch is not None:
        x0, y0, x1, y1 = r.notch
        rows.append(
            (
                ((x0 + x1) / 2, (y0 + y1) / 2, r.height / 2),
                [(x1 - x0) / 2, (y1 - y0) / 2, r.height / 2 + 0.01],
                0.0,
                0,
                r.wall_color,
                -1,
                0,
            )
        )
    f64 = torch.float64
    if rows:
        center, half, yaw, shape, color, pattern, ids = zip(*rows, strict=False)
    else:
        center = half = yaw = shape = color = pattern = ids = ()
    yaw_t = torch.tensor(yaw, dtype=f64)
    return SceneTensors(
        center=torch.tensor(center, dtype=f64).reshape(-1, 3),
        half=torch.tensor(half, dtype=f64).reshape(-1, 3),
        cos=torch.cos(yaw_t),
        sin=torch.sin(yaw_t),
        shape=torch.tensor(shape, dtype=torch.long),
        color=torch.tensor(color, dtype=torch.float32).reshape(-1, 3),
        pattern=torch.tensor(pattern, dtype=torch.long),
        ids=torch.tensor(ids, dtype=torch.int32),
        bounds=(r.length, r.width, r.height),
        room_colors=torch.tensor([*r.plane_wall_colors(), r.floor_color, r.ceiling_color], dtype=torch.float32),
    )


def _cameras(intrinsics, extrinsics):
    """→ (A [S,3,3] pixel→world direction, C [S,3] camera centres), float64."""
    K = torch.as_tensor(intrinsics, dtype=torch.float64)
    E = torch.as_tensor(extrinsics, dtype=torch.float64)
    R, t = E[:, :3, :3], E[:, :3, 3]
    Rt = R.transpose(1, 2)
    return Rt @ torch.linalg.inv(K), -(Rt @ t[..., None])[..., 0]


def _local(st: SceneTensors, A: Tensor, C: Tensor):
    """Per (frame, primitive): M ``[S,N,3,3]`` pixel→local direction, o ``[S,N,3]`` local origin."""
    c, s = st.cos[None, :, None], st.sin[None, :, None]
    rel = C[:, None, :] - st.center[None]  # [S,N,3]
    o = torch.stack(
        [
            c[..., 0] * rel[..., 0] + s[..., 0] * rel[..., 1],
            -s[..., 0] * rel[..., 0] + c[..., 0] * rel[..., 1],
            rel[..., 2],
        ],
        -1,
    )
    Ax, Ay, Az = A[:, None, 0, :], A[:, None, 1, :], A[:, None, 2, :]  # rows [S,1,3]
    M = torch.stack([c * Ax + s * Ay, -s * Ax + c * Ay, Az.expand(-1, st.center.shape[0], -1)], -2)
    return M, o


def _screen_boxes(st, intrinsics, extrinsics):
    """Projected bounding rectangles ``[S,N,4]`` (umin, umax, vmin, vmax) and a visibility mask
    ``[S,N]``; a primitive crossing the near plane gets an infinite rectangle."""
    K = torch.as_tensor(intrinsics, dtype=torch.float64)
    E = torch.as_tensor(extrinsics, dtype=torch.float64)
    signs = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float64)
    corners = signs[None] * st.half[:, None]  # [N,8,3]
    c, s = st.cos[:, None], st.sin[:, None]
    world = (
        torch.stack(
            [c * corners[..., 0] - s * corners[..., 1], s * corners[..., 0] + c * corners[..., 1], corners[..., 2]], -1
        )
        + st.center[:, None]
    )
    cam = torch.einsum("sij,nkj->snki", E[:, :, :3], world) + E[:, None, None, :, 3]  # [S,N,8,3]
    z = cam[..., 2]
    front_all, front_any = (z > NEAR).all(-1), (z > NEAR).any(-1)
    pix = torch.einsum("sij,snkj->snki", K, cam)
    uv = pix[..., :2] / z.clamp(min=NEAR)[..., None]
    box = torch.stack([uv[..., 0].amin(-1), uv[..., 0].amax(-1), uv[..., 1].amin(-1), uv[..., 1].amax(-1)], -1)
    inf = torch.tensor([-1e9, 1e9, -1e9, 1e9], dtype=torch.float64)
    box = torch.where(front_all[..., None], box, inf)
    return box, front_any


def _box_coeffs(M: Tensor, o: Tensor, h: Tensor) -> Tensor:
    """Slab test as linear forms: ``[P,9,3]`` rows (3 entering, 6 exiting planes) in inverse depth."""
    rows_p = M / (h - o)[..., None]  # plane +h_a
    rows_m = M / (-h - o)[..., None]  # plane -h_a
    pos, neg = (o > h)[..., None], (o < -h)[..., None]
    never = torch.zeros_like(rows_p)
    never[..., 2] = 1e30
    enter = torch.where(pos, rows_p, torch.where(neg, rows_m, never))
    exit1 = torch.where(pos, rows_m, rows_p)
    exit2 = torch.where(pos | neg, exit1, rows_m)
    return torch.cat([enter, exit1, exit2], 1)


def _box_tile_missed(coeffs: Tensor, tile: int) -> Tensor:
    """``[P]`` True where a box certainly misses its whole tile: the slab test's forms are linear, so
    ``enter_i − exit_j`` (or ``enter_i``) non-positive at the 4 tile corners is non-positive inside."""
    e = float(tile - 1)
    corners = torch.tensor([[0.0, e, 0.0, e], [0.0, 0.0, e, e], [1.0, 1.0, 1.0, 1.0]], dtype=coeffs.dtype)
    w = coeffs @ corners  # [P,9,4]
    enter, exits = w[:, :3], w[:, 3:]
    sep = ((enter[:, :, None] - exits[:, None]).amax(-1) <= 0).flatten(1).any(1)
    return sep | (enter.amax(-1) <= 0).any(1)


def _lin(coeffs: Tensor, grid: Tensor) -> Tensor:
    """Evaluate linear forms ``coeffs [...,3]`` on the tile grid ``[3,n]`` (du, dv, 1) → ``[...,n]``.
    Two fused multiply-adds; much faster than a K=3 matrix product."""
    out = torch.addcmul(coeffs[..., 2:3], coeffs[..., 0:1], grid[0])
    return out.addcmul_(coeffs[..., 1:2], grid[1])


def _box_w(coeffs: Tensor, grid: Tensor) -> Tensor:
    w = _lin(coeffs, grid)  # [P,9,n]
    enter = w[:, :3].amin(1)
    hit = (enter > w[:, 3:].amax(1)) & (enter > 0)
    return torch.where(hit, enter, torch.zeros(()))


def _cylinder_w(M: Tensor, o: Tensor, h: Tensor, grid: Tensor) -> Tensor:
    """Inverse depth ``[P,n]`` of vertical cylinders (radius ``h_x``, half height ``h_z``); ``M [P,3,3]``
    maps tile pixels to local ray directions, ``o [P,3]`` the local ray origin."""
    d = _lin(M, grid)
    ox, oy, oz = (o[:, i, None] for i in range(3))
    r, hz = h[:, 0, None], h[:, 2, None]
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - r * r
    disc = b * b - a * c
    w_side = (disc.clamp(min=0).sqrt() - b) / c.clamp(min=1e-9)
    side = (disc >= 0) & (w_side > 0) & (c > 0) & ((oz * w_side + dz).abs() <= hz * w_side)
    sgn = torch.sign(oz)
    w_cap = dz / (sgn * hz - oz)
    qx, qy = ox * w_cap + dx, oy * w_cap + dy
    cap = (oz.abs() > hz) & (w_cap > 0) & (qx * qx + qy * qy <= r * r * w_cap * w_cap)
    return torch.maximum(torch.where(side, w_side, 0.0), torch.where(cap, w_cap, 0.0))


def _sphere_w(M: Tensor, o: Tensor, h: Tensor, grid: Tensor) -> Tensor:
    """Inverse depth ``[P,n]`` of spheres (radius ``h_x``); arguments as :func:`_cylinder_w`."""
    d = _lin(M, grid)
    r = h[:, 0, None]
    a = (d * d).sum(1)
    b = (o[:, :, None] * d).sum(1)
    c = (o * o).sum(1, keepdim=True) - r * r
    disc = b * b - a * c
    w = (disc.clamp(min=0).sqrt() - b) / c.clamp(min=1e-9)
    return torch.where((disc >= 0) & (w > 0) & (c > 0), w, 0.0)


def _room_coeffs(A: Tensor, C: Tensor, bounds) -> Tensor:
    """``[S,6,3]`` linear forms of the inverse depth of the 6 room planes (x=0, x=L, y=0, y=W, z=0, z=H)."""
    rows = []
    for a, hi in enumerate(bounds):
        rows += [A[:, a] / (0.0 - C[:, a, None]), A[:, a] / (hi - C[:, a, None])]
    return torch.stack(rows, 1)


def _room_w(coeffs: Tensor, grid: Tensor):
    """Room inverse depth and plane index ``[T,n]`` from per-tile forms ``[T,6,3]``."""
    return _lin(coeffs, grid).max(1)


_COMPILED: dict[str, object] = {}
MAX_PRIMITIVES = 32  # tables are padded to this size for compiled kernels (30 objects + the notch)


def _kernel(name: str, compiled: bool):
    kernels: dict[str, Callable[..., Any]] = {
        "box": _box_w,
        "cylinder": _cylinder_w,
        "sphere": _sphere_w,
        "room": _room_w,
        "shade": shade,
    }
    fn = kernels[name]
    if not compiled:
        return fn
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn, dynamic=False)
    return _COMPILED[name]


def _pad(x: Tensor, n: int, value: float = 0.0) -> Tensor:
    """Pad dim 0 of ``x`` to ``n`` rows with ``value`` (static shapes for compiled kernels)."""
    if x.shape[0] >= n:
        return x
    return torch.cat([x, x.new_full((n - x.shape[0], *x.shape[1:]), value)])


def _intersect_tiles(st, A, C, intrinsics, extrinsics, H, W, tile, block=None, compiled=False):
    """Tiled z-buffer → (inverse depth ``[S,H,W]``, primitive index ``[S,H,W]`` (-1 room), room plane)."""
    S = A.shape[0]
    block = block or (128 if compiled else 512)  # pairs per kernel call (static size when compiled)
    ny, nx = -(-H // tile), -(-W // tile)
    g = torch.arange(tile, dtype=torch.float64)
    grid = torch.stack([g.repeat(tile), g.repeat_interleave(tile), torch.ones(tile * tile, dtype=torch.float64)])
    grid32 = grid.float()
    u0 = torch.arange(nx, dtype=torch.float64) * tile
    v0 = torch.arange(ny, dtype=torch.float64) * tile
    # room: per frame and tile
    rc = _room_coeffs(A, C, bounds=st.bounds)  # [S,6,3]
    rc_t = rc[:, None, None].expand(S, ny, nx, 6, 3).clone()
    rc_t[..., 2] += rc_t[..., 0] * u0[None, None, :, None] + rc_t[..., 1] * v0[None, :, None, None]
    zbuf, plane = _kernel("room", compiled)(rc_t.reshape(-1, 6, 3).float(), grid32)  # [S*ny*nx,n]
    prim = torch.full_like(plane, -1)
    if st.center.shape[0]:
        M, o = _local(st, A, C)
        box, vis = _screen_boxes(st, intrinsics, extrinsics)
        tu = (box[..., 1:2] >= u0 - 1) & (box[..., 0:1] <= u0 + tile)  # [S,N,nx]
        tv = (box[..., 3:4] >= v0 - 1) & (box[..., 2:3] <= v0 + tile)  # [S,N,ny]
        mask = tv[..., :, None] & tu[..., None, :] & vis[..., None, None]
        s_i, n_i, ty, tx = mask.nonzero(as_tuple=True)
        if s_i.numel():
            Mp = M[s_i, n_i].clone()  # [P,3,3]
            Mp[..., 2] += Mp[..., 0] * u0[tx, None] + Mp[..., 1] * v0[ty, None]
            op, hp, shp = o[s_i, n_i], st.half[n_i], st.shape[n_i]
            lin = (s_i * ny + ty) * nx + tx
            ws, lins, prims = [], [], []
            for code, name in ((0, "box"), (1, "cylinder"), (2, "sphere")):
                fn = _kernel(name, compiled)
                sel = (shp == code).nonzero(as_tuple=True)[0]
                if code == 0 and sel.numel():
                    coeffs = _box_coeffs(Mp[sel], op[sel], hp[sel])
                    keep = ~_box_tile_missed(coeffs, tile)
                    sel, coeffs = sel[keep], coeffs[keep].float()
                for a in range(0, sel.numel(), block):  # blocks of pairs stay cache-sized
                    part = sel[a : a + block]
                    n = part.numel()
                    size = block if compiled else n
                    if code == 0:
                        w = fn(_pad(coeffs[a : a + block], size), grid32)
                    else:  # padding rows (zero origin, unit size) never hit
                        w = fn(
                            _pad(Mp[part].float(), size),
                            _pad(op[part].float(), size),
                            _pad(hp[part].float(), size, 1.0),
                            grid32,
                        )
                    ws.append(w[:n])
                    lins.append(lin[part])
                    prims.append(n_i[part])
            if ws:
                w, lin, pr = torch.cat(ws), torch.cat(lins), torch.cat(prims)
                idx = lin[:, None].expand_as(w)
                zbuf.scatter_reduce_(0, idx, w, "amax")
                win = (w == zbuf[lin]) & (w > 0)
                prim.scatter_reduce_(0, idx, torch.where(win, pr[:, None], -1), "amax")

    def untile(x):
        return x.reshape(S, ny, nx, tile, tile).permute(0, 1, 3, 2, 4).reshape(S, ny * tile, nx * tile)[:, :H, :W]

    return untile(zbuf), untile(prim), untile(plane)


def render(
    scene: Scene | SceneTensors,
    intrinsics,
    extrinsics,
    image_size: tuple[int, int],
    *,
    rgb: bool = True,
    normals: bool = False,
    tile: int = 16,
    chunk: int | None = None,
    compiled: bool | None = None,
) -> dict[str, Tensor]:
    """Render ``S`` views of ``scene``.

    intrinsics ``[S,3,3]`` (pixels), extrinsics ``[S,3,4]`` world-to-camera (OpenCV), image_size
    ``(H, W)``. Returns ``{"depth": [S,H,W] float32 metres (z-depth), "ids": [S,H,W] int32 instance ids
    (0 = room), "rgb": [S,3,H,W] float32 in [0,1] (if ``rgb``), "normals": [S,3,H,W] world (if
    ``normals``)}``. Frames are processed ``chunk`` at a time to stay cache-friendly (``None``: 8 eager,
    which amortises the per-op overhead of the many small tensor ops, 4 compiled).

    ``compiled=True`` runs the per-pixel kernels through ``torch.compile`` (fused C++ loops: shading
    ~10× and the whole render ~3× faster on CPU; the first call per image size and ``chunk`` compiles
    for ~15–30 s, later processes reuse the on-disk cache). ``None`` reads ``GEOVR_COMPILE_RENDERER=1`` from the
    environment. Results equal the eager ones up to float rounding.
    """
    if compiled is None:
        compiled = os.environ.get("GEOVR_COMPILE_RENDERER", "").lower() in {"1", "true", "yes", "on"}
    if chunk is None:
        chunk = 4 if compiled else 8
    st = scene if isinstance(scene, SceneTensors) else scene_tensors(scene)
    H, W = image_size
    K = torch.as_tensor(intrinsics, dtype=torch.float64)
    E = torch.as_tensor(extrinsics, dtype=torch.float64)
    outs: dict[str, list[Tensor]] = {}
    if compiled and st.center.shape[0] > MAX_PRIMITIVES:
        raise ValueError(f"compiled rendering supports up to {MAX_PRIMITIVES} primitives, got {st.center.shape[0]}")
    for a in range(0, K.shape[0], chunk):
        Kc, Ec = K[a : a + chunk], E[a : a + chunk]
        n = Kc.shape[0]
        if compiled and n < chunk:  # keep shapes static: repeat the last view, drop it afterwards
            Kc, Ec = _pad(Kc, chunk), _pad(Ec, chunk)
            Kc[n:], Ec[n:] = Kc[n - 1], Ec[n - 1]
        A, C = _cameras(Kc, Ec)
        winv, prim, plane = _intersect_tiles(st, A, C, Kc, Ec, H, W, tile, compiled=compiled)
        part = _finish(st, A, C, winv, prim, plane, H, W, rgb, normals, compiled)
        for key, val in part.items():
            outs.setdefault(key, []).append(val[:n])
    return {key: torch.cat(v) for key, v in outs.items()}


def _padded_tables(st: SceneTensors, n: int = MAX_PRIMITIVES) -> SceneTensors:
    """``st`` with every table padded to ``n`` primitives (static shapes for compiled shading)."""
    return attrs.evolve(
        st,
        center=_pad(st.center, n),
        half=_pad(st.half, n, 1.0),
        cos=_pad(st.cos, n, 1.0),
        sin=_pad(st.sin, n),
        shape=_pad(st.shape, n),
        color=_pad(st.color, n),
        pattern=_pad(st.pattern, n),
        ids=_pad(st.ids, n),
    )


def _finish(st, A, C, winv, prim, plane, H, W, rgb, normals, compiled=False):
    depth = 1.0 / winv
    if st.ids.numel():
        ids = torch.where(prim >= 0, torch.take(st.ids, prim.clamp(min=0)), 0).to(torch.int32)
    else:
        ids = torch.zeros_like(prim, dtype=torch.int32)
    out = {"depth": depth, "ids": ids}
    if rgb or normals:
        if compiled:
            img, nrm = _kernel("shade", True)(_padded_tables(st), A, C, depth, prim, plane, H, W, want_rgb=rgb)
        else:
            img, nrm = shade(st, A, C, depth, prim, plane, H, W, want_rgb=rgb)
        if rgb:
            out["rgb"] = img
        if normals:
            out["normals"] = nrm
    return out


def warm_up(image_size: tuple[int, int], chunk: int | None = None) -> None:
    """Compile every ``torch.compile`` kernel :func:`render` uses at ``image_size`` (room, box, cylinder,
    sphere and shading) by rendering one chunk of a small room holding one primitive of each shape in
    view. Processes forked afterwards inherit the compiled kernels (``geovr data synth`` compiles once in
    the parent instead of once per worker). Raises whatever ``torch.compile`` raises when it cannot
    work here (for instance no C++ compiler)."""
    from geovr.data.synthetic.camera import camera_extrinsics, intrinsics_from_fov
    from geovr.data.synthetic.scene import Room, Scene, SceneObject

    H, W = image_size
    chunk = chunk or 4
    objects = [
        SceneObject(1, "table", "box", (2.6, 1.2, 0.4), (0.6, 0.5, 0.8), 0.3, pattern=1),
        SceneObject(2, "trash can", "cylinder", (2.6, 2.0, 0.4), (0.5, 0.5, 0.8), pattern=2),
        SceneObject(3, "ball", "sphere", (2.6, 2.8, 0.4), (0.6, 0.6, 0.6), pattern=3),
    ]
    scene = Scene("warm-up", Room(4.0, 4.0, 2.6, notch=(3.0, 3.0, 4.0, 4.0)), objects)
    K = intrinsics_from_fov(80.0, H, W)
    E = camera_extrinsics((0.4, 2.0, 1.4), 0.0, -0.35)
    render(scene, K[None].repeat(chunk, 0), E[None].repeat(chunk, 0), (H, W), chunk=chunk, compiled=True)
