"""The plain reference renderer: a loop over primitives testing every pixel of every frame.

It exists to check :func:`geovr.data.synthetic.render.render` (same outputs) and to benchmark it
(``benchmarks/render.py``).
"""

from __future__ import annotations

import math

import torch

from geovr.data.synthetic.render import SceneTensors, _cameras, _finish, _local, scene_tensors
from geovr.data.synthetic.scene import Scene


def render_reference(scene: Scene | SceneTensors, intrinsics, extrinsics, image_size, *, rgb: bool = True):
    """Plain reference: loop over primitives, test every pixel of every frame (float32 ``t``-space
    slab/quadratic tests, z-buffer with ``torch.where``). Same outputs as :func:`render`."""
    st = scene if isinstance(scene, SceneTensors) else scene_tensors(scene)
    H, W = image_size
    A, C = _cameras(intrinsics, extrinsics)
    S = A.shape[0]
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1)
    D = (A @ pix).float()  # [S,3,HW]
    Cf = C.float()
    bounds = torch.tensor(st.bounds, dtype=torch.float32)
    t_hi = torch.where(D > 0, (bounds[None, :, None] - Cf[..., None]) / D, (0 - Cf[..., None]) / D)
    t_hi = torch.where(D == 0, torch.tensor(math.inf), t_hi)
    depth, axis = t_hi.min(1)
    plane = 2 * axis + (D.gather(1, axis[:, None])[:, 0] > 0).long()
    prim = torch.full_like(plane, -1)
    M, o = _local(st, A, C)
    for n in range(st.center.shape[0]):
        d = M[:, n].float() @ pix.float()  # [S,3,HW]
        on, hn = o[:, n].float()[..., None], st.half[n].float()[None, :, None]
        code = int(st.shape[n])
        if code == 0:
            t1, t2 = (-hn - on) / d, (hn - on) / d
            tnear = torch.minimum(t1, t2).amax(1)
            tfar = torch.maximum(t1, t2).amin(1)
            hit = (tnear <= tfar) & (tnear > 0)
            t = tnear
        else:
            r = hn[:, 0]
            if code == 2:
                a, b, c = (d * d).sum(1), (on * d).sum(1), (on * on).sum(1) - r * r
            else:
                a = (d[:, :2] ** 2).sum(1)
                b, c = (on[:, :2] * d[:, :2]).sum(1), (on[:, :2] ** 2).sum(1) - r * r
            disc = b * b - a * c
            t = (-b - disc.clamp(min=0).sqrt()) / a
            hit = (disc >= 0) & (t > 0)
            if code == 1:
                hz = hn[:, 2]
                hit &= (on[:, 2] + t * d[:, 2]).abs() <= hz
                tc = (torch.sign(on[:, 2]) * hz - on[:, 2]) / d[:, 2]
                qx, qy = on[:, 0] + tc * d[:, 0], on[:, 1] + tc * d[:, 1]
                cap = (on[:, 2].abs() > hz) & (tc > 0) & (qx * qx + qy * qy <= r * r)
                t = torch.where(hit & (~cap | (t < tc)), t, tc)
                hit = hit | cap
        closer = hit & (t < depth)
        depth = torch.where(closer, t, depth)
        prim = torch.where(closer, n, prim)
    depth, prim, plane = (x.reshape(S, H, W) for x in (depth, prim, plane))
    return _finish(st, A, C, 1.0 / depth, prim, plane, H, W, rgb, False)
