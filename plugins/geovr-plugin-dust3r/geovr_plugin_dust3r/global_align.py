"""Global alignment of pairwise DUSt3R pointmaps over a pair graph (the behaviour of DUSt3R's own
global aligner, written for batches of videos).

Independent of the network, like :mod:`geovr_plugin_dust3r.pointmaps`: the functions take the
pointmaps and confidences of the ordered frame pairs ``edges = [(i, j), ...]`` and can be fed ground
truth. For an edge ``e = (i, j)`` the network gives ``pts_i[e]`` (frame ``i``'s pixels in camera ``i``)
and ``pts_j[e]`` (frame ``j``'s pixels, also in camera ``i``), both at the pair's own arbitrary scale,
with confidences ``conf_i[e]``, ``conf_j[e]`` (> 1).

Unknowns (per video): a camera-to-world pose per frame (unit quaternion, xyzw, and translation), a
focal length per frame (``fx = fy``, principal point at ``(W/2, H/2)``), a depth map per frame, and a
similarity (rotation, translation, scale) per edge that places the pair in the world. The energy is

    Σ_e Σ_pixels  log(conf_i[e])·‖X_i − T_e(pts_i[e])‖ + log(conf_j[e])·‖X_j − T_e(pts_j[e])‖

(divided by the number of pixel terms), where ``X_k`` are frame ``k``'s depths unprojected with its
focal length and moved to the world by its pose. The scale gauge is fixed by keeping the geometric
mean of the edge scales at 1, so the world is at the pairs' average scale.

1. **Initialisation** (a maximum spanning tree over the edge scores ``mean(conf_i)·mean(conf_j)``):
   the strongest edge puts its two pointmaps in the world as they are; every further tree edge
   touching a placed frame is registered to it by a confidence-weighted similarity (Umeyama) and
   places its other frame. Each frame's pose is then the similarity from its own pointmap (its most
   confident edge where it is view 1) to its placed points, its focal length is estimated from that
   pointmap (:func:`~geovr_plugin_dust3r.pointmaps.estimate_focal`) and its depth is the z of its
   placed points in that camera. Every edge's similarity is registered the same way.
2. **Optimisation**: Adam (betas 0.9, 0.9) for ``niter`` steps on all unknowns, learning rate from
   ``lr`` down to ``lr_min`` on a cosine (or linear) schedule. Log-depth, ``20·log focal`` and the
   edges' log-scales are the optimised quantities (the same conditioning as DUSt3R).

With exact pointmaps the initialisation is already exact and the optimisation keeps it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geovr.geometry import closed_form_inverse_se3, mat_to_quat, quat_to_mat
from geovr_plugin_dust3r.config import GRAPH_PATTERN, graph_problem
from geovr_plugin_dust3r.pointmaps import estimate_focal, pixel_grid, umeyama

FOCAL_BREAK = 20.0


def make_edges(num_frames: int, graph: str = "complete") -> list[tuple[int, int]]:
    """The ordered pairs ``(i, j)``, ``i != j``, of ``graph`` (see
    :data:`~geovr_plugin_dust3r.config.GRAPH_PATTERN`) over ``num_frames`` frames, each unordered pair
    once in each order, sorted. One frame gives no pairs."""
    problem = graph_problem(graph)
    if problem:
        raise ValueError(problem)
    S = int(num_frames)
    pairs: set[tuple[int, int]] = set()
    m = GRAPH_PATTERN.match(graph)
    if graph == "complete":
        pairs = {(i, j) for i in range(S) for j in range(S) if i != j}
    elif graph == "oneref":
        pairs = {(0, j) for j in range(1, S)}
    else:
        k, cyclic = int(m.group(2)), m.group(3) is None
        for i in range(S):
            for d in range(1, k + 1):
                j = (i + d) % S if cyclic else i + d
                if j < S and j != i:
                    pairs.add((i, j))
    pairs |= {(j, i) for i, j in pairs}
    return sorted(pairs)


def _max_spanning_tree(num_frames: int, scores: dict[tuple[int, int], float]) -> list[tuple[float, int, int]]:
    """Kruskal on the undirected graph, each unordered pair represented by its better direction.
    Returns the tree's ordered edges ``(score, i, j)``, best first."""
    best: dict[tuple[int, int], tuple[float, int, int]] = {}
    for (i, j), s in scores.items():
        key = (min(i, j), max(i, j))
        if key not in best or s > best[key][0]:
            best[key] = (s, i, j)
    parent = list(range(num_frames))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    tree = []
    for s, i, j in sorted(best.values(), key=lambda t: (-t[0], t[1], t[2])):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[ri] = rj
            tree.append((s, i, j))
    if len(tree) != num_frames - 1:
        raise ValueError(f"the pair graph does not connect all {num_frames} frames")
    return tree


def _sim(s: Tensor, R: Tensor, t: Tensor, pts: Tensor) -> Tensor:
    """``s·R·pts + t`` for one similarity (``s`` scalar, ``R [3,3]``, ``t [3]``) and ``pts [...,3]``."""
    return s * pts @ R.T + t


def _weights(conf: Tensor) -> Tensor:
    """DUSt3R confidences (> 1) → fitting weights ``log(conf)``."""
    return torch.log(conf.clamp(min=1.0 + 1e-6))


@torch.no_grad()
def init_spanning_tree(
    edges, pts_i: Tensor, pts_j: Tensor, conf_i: Tensor, conf_j: Tensor, num_frames: int, *, focal_iters: int = 10
) -> dict[str, Tensor]:
    """Spanning-tree initialisation of one video (step 1 of the module docstring).

    ``pts_i``, ``pts_j`` ``[E,H,W,3]``, ``conf_i``, ``conf_j`` ``[E,H,W]`` for ``edges`` (E ordered
    pairs). Returns ``cam_to_world [S,4,4]``, ``focal [S]``, ``depth [S,H,W]``, ``pw_scale [E]``,
    ``pw_R [E,3,3]``, ``pw_t [E,3]`` (edge → world), with the edge scales' geometric mean at 1.
    """
    S = num_frames
    E, H, W, _ = pts_i.shape
    dt, dev = pts_i.dtype, pts_i.device
    wi, wj = _weights(conf_i), _weights(conf_j)
    scores = {e: float(conf_i[n].mean() * conf_j[n].mean()) for n, e in enumerate(edges)}
    index = {e: n for n, e in enumerate(edges)}
    tree = _max_spanning_tree(S, scores)

    placed: list[Tensor | None] = [None] * S
    _, i, j = tree[0]
    n = index[(i, j)]
    placed[i], placed[j] = pts_i[n], pts_j[n]
    todo = list(tree[1:])
    while todo:  # the best tree edge touching exactly one placed frame (a tree always has one)
        k = next(k for k, (_, i, j) in enumerate(todo) if (placed[i] is None) != (placed[j] is None))
        _, i, j = todo.pop(k)
        n = index[(i, j)]
        if placed[i] is not None:  # register view 1 to its placed points, place view 2
            known, w, other, ref, dst = pts_i[n], wi[n], pts_j[n], placed[i], j
        else:
            known, w, other, ref, dst = pts_j[n], wj[n], pts_i[n], placed[j], i
        s, R, t = umeyama(known.reshape(1, -1, 3), ref.reshape(1, -1, 3), w.reshape(1, -1))
        placed[dst] = _sim(s[0].to(dt), R[0].to(dt), t[0].to(dt), other)
    world = torch.stack(placed)  # [S,H,W,3]

    # per frame: its most confident edge where it is view 1 gives its own pointmap
    own_edge = []
    for k in range(S):
        cands = [(float(conf_i[n].mean()), n) for n, (a, _) in enumerate(edges) if a == k]
        if not cands:
            raise ValueError(f"frame {k} is never the first view of a pair; the pair graph must be symmetric")
        own_edge.append(max(cands)[1])
    own = pts_i[own_edge]  # [S,H,W,3]
    s, R, t = umeyama(own.reshape(S, -1, 3), world.reshape(S, -1, 3), wi[own_edge].reshape(S, -1))
    c2w = torch.eye(4, dtype=torch.float64, device=dev).repeat(S, 1, 1)
    c2w[:, :3, :3], c2w[:, :3, 3] = R, t
    # a sane range for untrained networks (0.5x to 3.5x the focal of a 60-degree field of view)
    f60 = max(H, W) / (2 * math.tan(math.radians(30)))
    focal = estimate_focal(own, wi[own_edge], iters=focal_iters).nan_to_num(f60).clamp(0.5 * f60, 3.5 * f60)
    w2c = closed_form_inverse_se3(c2w).to(dt)
    cam = torch.einsum("sij,shwj->shwi", w2c[:, :3, :3], world) + w2c[:, None, None, :3, 3]
    depth = cam[..., 2]

    ps, pR, pt = umeyama(pts_i.reshape(E, -1, 3), world[[a for a, _ in edges]].reshape(E, -1, 3), wi.reshape(E, -1))
    g = torch.exp(torch.log(ps.clamp(min=1e-12)).mean())  # gauge: geometric mean of edge scales = 1
    c2w[:, :3, 3] /= g
    return {
        "cam_to_world": c2w.to(dt),
        "focal": focal.to(dt),
        "depth": depth / g.to(dt),
        "pw_scale": (ps / g).to(dt),
        "pw_R": pR.to(dt),
        "pw_t": (pt / g).to(dt),
    }


def _lr_at(step: int, niter: int, lr: float, lr_min: float, schedule: str) -> float:
    t = step / max(1, niter)
    if schedule == "cosine":
        return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * t)) / 2
    if schedule == "linear":
        return lr + (lr_min - lr) * t
    raise ValueError(f"unknown schedule {schedule!r} (expected 'cosine' or 'linear')")


def _unproject(depth: Tensor, focal: Tensor, c2w_R: Tensor, c2w_t: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """depth ``[B,S,H,W]``, focal ``[B,S]``, pose ``[B,S,3,3]``/``[B,S,3]`` → world points ``[B,S,H,W,3]``."""
    f = focal[..., None, None]
    cam = torch.stack([depth * u / f, depth * v / f, depth], dim=-1)
    return torch.einsum("bsij,bshwj->bshwi", c2w_R, cam) + c2w_t[:, :, None, None]


def global_align(
    edges,
    pts_i: Tensor,
    pts_j: Tensor,
    conf_i: Tensor,
    conf_j: Tensor,
    num_frames: int,
    *,
    niter: int = 300,
    lr: float = 0.01,
    lr_min: float = 1e-6,
    schedule: str = "cosine",
    focal_iters: int = 10,
) -> dict[str, Tensor]:
    """Align the pair predictions of a batch of videos (module docstring).

    ``pts_i``, ``pts_j`` ``[B,E,H,W,3]`` and ``conf_i``, ``conf_j`` ``[B,E,H,W]`` for the ordered pairs
    ``edges`` (the same graph for every video). Returns, like
    :func:`~geovr_plugin_dust3r.pointmaps.frames_from_pairs`: ``depth [B,S,H,W]``, ``depth_conf
    [B,S,H,W]`` (per pixel the largest confidence any pair gives the frame), ``focal [B,S]``,
    ``cam_to_ref [B,S,4,4]`` and ``extrinsics [B,S,3,4]`` (reference = frame 0, identity),
    ``points [B,S,H,W,3]`` (depth unprojected, in camera 0), plus ``loss`` (final energy, ``[B]``).
    Runs under autograd even when called inside ``torch.no_grad``/``inference_mode``; the outputs
    carry no graph. Computes in the dtype of ``pts_i``.
    """
    B, E, H, W, _ = pts_i.shape
    S = num_frames
    if len(edges) != E:
        raise ValueError(f"{len(edges)} edges but pointmaps for {E} pairs")
    with torch.inference_mode(False), torch.enable_grad():
        pts_i, pts_j, conf_i, conf_j = (x.detach().clone() for x in (pts_i, pts_j, conf_i, conf_j))
        dt, dev = pts_i.dtype, pts_i.device
        inits = [
            init_spanning_tree(edges, pts_i[b], pts_j[b], conf_i[b], conf_j[b], S, focal_iters=focal_iters)
            for b in range(B)
        ]

        def stack(key):
            return torch.stack([d[key] for d in inits])

        c2w0 = stack("cam_to_world")
        q = torch.nn.Parameter(mat_to_quat(c2w0[..., :3, :3]))  # [B,S,4]
        t = torch.nn.Parameter(c2w0[..., :3, 3].clone())  # [B,S,3]
        log_f = torch.nn.Parameter(FOCAL_BREAK * torch.log(stack("focal")))  # [B,S]
        log_d = torch.nn.Parameter(torch.log(stack("depth").clamp(min=1e-6)))  # [B,S,H,W]
        pq = torch.nn.Parameter(mat_to_quat(stack("pw_R")))  # [B,E,4]
        pt = torch.nn.Parameter(stack("pw_t"))  # [B,E,3]
        plog_s = torch.nn.Parameter(torch.log(stack("pw_scale")))  # [B,E]
        params = [q, t, log_f, log_d, pq, pt, plog_s]
        u, v = pixel_grid(H, W, dtype=dt, device=dev)
        ei = torch.tensor([a for a, _ in edges], device=dev)
        ej = torch.tensor([b for _, b in edges], device=dev)
        wi, wj = _weights(conf_i), _weights(conf_j)
        npix = E * H * W

        def energy() -> Tensor:  # [B]
            pts = _unproject(log_d.exp(), (log_f / FOCAL_BREAK).exp(), quat_to_mat(q), t, u, v)
            scale = (plog_s - plog_s.mean(dim=1, keepdim=True)).exp()  # geometric mean fixed at 1
            sR = scale[..., None, None] * quat_to_mat(pq)  # [B,E,3,3]

            def placed(p):  # [B,E,H,W,3] pair points → world
                return torch.einsum("beij,behwj->behwi", sR, p) + pt[:, :, None, None]

            di = ((pts[:, ei] - placed(pts_i)).norm(dim=-1) * wi).sum((1, 2, 3))
            dj = ((pts[:, ej] - placed(pts_j)).norm(dim=-1) * wj).sum((1, 2, 3))
            return (di + dj) / npix

        if niter > 0:
            opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9))
            for step in range(niter):
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, niter, lr, lr_min, schedule)
                opt.zero_grad()
                energy().sum().backward()
                opt.step()
        with torch.no_grad():
            loss = energy()
            depth = log_d.exp()
            focal = (log_f / FOCAL_BREAK).exp()
            c2w = torch.eye(4, dtype=dt, device=dev).repeat(B, S, 1, 1)
            c2w[..., :3, :3], c2w[..., :3, 3] = quat_to_mat(q), t
            to_ref = closed_form_inverse_se3(c2w[:, 0])[:, None]  # world → camera 0
            cam_to_ref = to_ref @ c2w
            cam_to_ref[:, 0] = torch.eye(4, dtype=dt, device=dev)
            points = _unproject(depth, focal, cam_to_ref[..., :3, :3], cam_to_ref[..., :3, 3], u, v)
            conf = torch.zeros(B, S, H, W, dtype=conf_i.dtype, device=dev)
            for n, (a, b_) in enumerate(edges):
                conf[:, a] = torch.maximum(conf[:, a], conf_i[:, n])
                conf[:, b_] = torch.maximum(conf[:, b_], conf_j[:, n])
    return {
        "depth": depth.detach(),
        "depth_conf": conf,
        "focal": focal.detach(),
        "cam_to_ref": cam_to_ref.detach(),
        "extrinsics": closed_form_inverse_se3(cam_to_ref.detach())[..., :3, :],
        "points": points.detach(),
        "loss": loss.detach(),
    }
