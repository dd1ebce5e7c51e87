"""Shading of ray-cast hits: Lambert + head-light on procedural textures (floor checker, striped
walls with a skirting, per-object stripes/checker/bands). Inputs are the renderer's per-pixel depth,
primitive index and room plane; everything works on flat per-component tensors."""

from __future__ import annotations

import torch
from torch import Tensor

_LIGHT = (0.3, 0.45, 0.84)
_ROOM_NORMALS = ((1.0, 0, 0), (-1.0, 0, 0), (0, 1.0, 0), (0, -1.0, 0), (0, 0, 1.0), (0, 0, -1.0))


def _parity(x: Tensor) -> Tensor:
    """``floor(x) mod 2`` as 0./1. floats (cheaper than ``torch.remainder``)."""
    h = x * 0.5
    return ((h - torch.floor(h)) >= 0.5).float()


def _room_texture(X, plane):
    """Room colour factor per pixel: floor checker (0.5 m), wall stripes (0.4 m) with a dark skirting,
    plain ceiling. X: 3 tensors ``[P]``; plane ``[P]`` (0..5, see :func:`_room_coeffs`)."""
    floor = 0.82 + 0.18 * _parity(torch.floor(X[0] * 2.0) + torch.floor(X[1] * 2.0))
    wall = torch.where(X[2] < 0.12, 0.55, 0.92 + 0.08 * _parity((X[0] + X[1]) * 2.5))
    return torch.where(plane == 4, floor, torch.where(plane == 5, 1.0, wall)), wall


def shade(st, A, C, depth, prim, plane, H, W, want_rgb=True):
    """RGB ``[S,3,H,W]`` and world normals ``[S,3,H,W]`` from depth ``[S,H,W]``, primitive index
    ``[S,H,W]`` (-1 = room) and room plane ``[S,H,W]``. Works on flat per-component tensors."""
    S = A.shape[0]
    n = H * W
    A32, C32 = A.float(), C.float()
    u = torch.arange(W, dtype=torch.float32).repeat(H)
    v = torch.arange(H, dtype=torch.float32).repeat_interleave(W)
    d = depth.reshape(S, n)
    D = [
        torch.addcmul(torch.addcmul(A32[:, i, 2:3], A32[:, i, 0:1], u), A32[:, i, 1:2], v).reshape(-1) for i in range(3)
    ]
    X = [torch.addcmul(C32[:, i : i + 1], D[i].view(S, n), d).reshape(-1) for i in range(3)]
    pl = plane.reshape(-1)
    k = prim.reshape(-1)
    is_obj = k >= 0
    room_tex, wall_tex = _room_texture(X, pl)
    rn = torch.tensor(_ROOM_NORMALS, dtype=torch.float32).T.contiguous()  # [3,6]
    normal = [torch.take(rn[i], pl) for i in range(3)]
    color = [torch.take(st.room_colors[:, i].contiguous(), pl) for i in range(3)]
    tex = room_tex
    if st.center.shape[0]:
        tab = torch.cat(
            [
                st.center.float(),
                st.half.float(),
                st.cos.float()[:, None],
                st.sin.float()[:, None],
                st.shape.float()[:, None],
                st.pattern.float()[:, None],
                st.color,
            ],
            1,
        ).T.contiguous()
        g = tab.index_select(1, k.clamp(min=0))  # [13,P]
        cx, cy, cz, hx, hy, hz, cs, sn, shp, pat = g[:10]
        rx, ry, pz = X[0] - cx, X[1] - cy, X[2] - cz
        px, py = cs * rx + sn * ry, cs * ry - sn * rx
        qx, qy, qz = px.abs() / hx, py.abs() / hy, pz.abs() / hz
        ax = (qx >= qy) & (qx >= qz)
        ay = ~ax & (qy >= qz)
        az = ~(ax | ay)
        radial = torch.sqrt(px * px + py * py).clamp(min=1e-6)
        norm = torch.sqrt(px * px + py * py + pz * pz).clamp(min=1e-6)
        cap = qz > radial / hx
        box, cyl = shp == 0, shp == 1
        one = torch.ones(())
        inv_r = torch.where(cyl, torch.where(cap, 0.0, 1.0 / radial), 1.0 / norm)
        nlx = torch.where(box, torch.where(ax, torch.sign(px), 0.0), px * inv_r)
        nly = torch.where(box, torch.where(ay, torch.sign(py), 0.0), py * inv_r)
        nlz = torch.where(
            box,
            torch.where(az, torch.sign(pz), 0.0),
            torch.where(cyl, torch.where(cap, torch.sign(pz), 0.0), pz * inv_r),
        )
        stripes = 0.8 + 0.2 * _parity(px * 12.5)
        checker = 0.8 + 0.2 * _parity(torch.floor(px * 8.0) + torch.floor(py * 8.0) + torch.floor(pz * 8.0))
        bands = 0.85 + 0.15 * _parity(pz * 16.0)
        obj_tex = torch.where(
            pat == 1,
            stripes,
            torch.where(pat == 2, checker, torch.where(pat == 3, bands, torch.where(pat < 0, wall_tex, one))),
        )
        n_obj = (cs * nlx - sn * nly, sn * nlx + cs * nly, nlz)
        normal = [torch.where(is_obj, n_obj[i], normal[i]) for i in range(3)]
        color = [torch.where(is_obj, g[10 + i], color[i]) for i in range(3)]
        tex = torch.where(is_obj, obj_tex, tex)
    nrm = torch.stack(normal).view(3, S, H, W).transpose(0, 1)
    if not want_rgb:
        return None, nrm
    lam = (normal[0] * _LIGHT[0] + normal[1] * _LIGHT[1] + normal[2] * _LIGHT[2]).clamp(min=0)
    dlen = torch.sqrt(D[0] * D[0] + D[1] * D[1] + D[2] * D[2])
    head = (-(normal[0] * D[0] + normal[1] * D[1] + normal[2] * D[2]) / dlen).clamp(min=0)
    shade = tex * (0.3 + 0.45 * lam + 0.3 * head)
    rgb = torch.stack([(c * shade).clamp(0, 1) for c in color]).view(3, S, H, W).transpose(0, 1).contiguous()
    return rgb, nrm
