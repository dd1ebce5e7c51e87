"""Pair predictions derived from exact geometry, for measuring the two derivations (``oneref`` and
``global``) against ground truth without a trained network.

A *scene* is exact per-frame geometry: ``cam_to_world [S,4,4]``, ``depth [S,H,W]``, ``focal [S]``
(principal point at ``(W/2, H/2)``) and ``world [S,H,W,3]`` (each pixel's world point), float64.
:func:`synthetic_scene` takes it from the embedded synthetic world (exact renders).

:func:`pair_predictions` turns a scene into what DUSt3R would output for ordered pairs ``(i, j)``:
``pts_i`` (frame i in camera i) and ``pts_j`` (frame j in camera i), each pair at its own random scale,
with optional per-pixel noise (``noise`` × depth, Gaussian), a small per-pair rigid error on the second
view (``pair_error_deg``: what a pair's relative-pose estimate gets wrong) and, for pairs whose frames
are more than ``overlap`` apart, the situation of frames that share nothing: the second view is placed
with a large random rigid error (``bad_error_deg``, and a translation of ``bad_shift`` × median depth)
and its confidence is low. Confidences: ``1 + exp(N(1.5, 0.3))`` for good views, ``1 + exp(N(bad_conf,
0.3))`` (default ``bad_conf = -3``, i.e. about 1.05) for views without overlap. :func:`oneref_pairs` packs the same predictions for
:func:`~geovr_plugin_dust3r.pointmaps.frames_from_pairs`; :func:`pose_depth_errors` scores a result.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geovr.geometry import closed_form_inverse_se3, quat_to_mat

F64 = torch.float64


def synthetic_scene(
    num_frames: int = 8, image_size=(24, 32), seed: int = 0, trajectory: str = "walk", index: int = 0
) -> dict[str, Tensor]:
    """Exact geometry of sample ``index`` of ``synthetic_rooms`` (rotations re-orthonormalised in float64)."""
    from geovr.geometry import unproject_depth
    from geovr.plugins import get_registry
    from geovr.protocols import BuildContext

    data = (
        get_registry()
        .get("dataset", "synthetic_rooms")
        .build(
            {
                "num_samples": index + 1,
                "num_frames": num_frames,
                "image_size": list(image_size),
                "seed": seed,
                "num_objects": [3, 6],
                "trajectory": trajectory,
            },
            BuildContext(),
        )
    )
    sample = data[index]
    depth, K, ext = sample["depth"].double(), sample["intrinsics"].double(), sample["extrinsics"].double()
    U, _, Vh = torch.linalg.svd(ext[:, :, :3])
    ext[:, :, :3] = U @ Vh
    world = unproject_depth(depth[None], ext[None], K[None])[0]
    return {"cam_to_world": closed_form_inverse_se3(ext), "depth": depth, "focal": K[:, 0, 0], "world": world}


def _in_camera(c2w: Tensor, pts: Tensor) -> Tensor:
    w2c = closed_form_inverse_se3(c2w)
    return pts @ w2c[:3, :3].T + w2c[:3, 3]


def _random_rotation(deg: float, g: torch.Generator) -> Tensor:
    axis = torch.randn(3, generator=g, dtype=F64)
    axis = axis / axis.norm()
    angle = math.radians(deg) * float(torch.randn(1, generator=g, dtype=F64))
    q = torch.cat([axis * math.sin(angle / 2), torch.tensor([math.cos(angle / 2)], dtype=F64)])
    return quat_to_mat(q)


def pair_predictions(
    scene: dict,
    edges,
    *,
    noise: float = 0.0,
    pair_error_deg: float = 0.0,
    overlap: int | None = None,
    bad_error_deg: float = 20.0,
    bad_shift: float = 0.3,
    bad_conf: float = -3.0,
    seed: int = 0,
    dtype=F64,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(pts_i, pts_j [E,H,W,3], conf_i, conf_j [E,H,W])`` for the ordered pairs ``edges`` (module
    docstring). A pair ``(i, i)`` is a frame with itself (no pose error, no overlap loss). Each pair's
    randomness is seeded from ``(seed, i, j)``, so a pair gets the same prediction in any edge list."""
    c2w, world, depth = scene["cam_to_world"], scene["world"], scene["depth"]
    H, W = depth.shape[-2:]
    med = float(depth.median())
    out = ([], [], [], [])

    def conf(good: bool) -> Tensor:
        mu = 1.5 if good else bad_conf
        return 1 + torch.exp(mu + 0.3 * torch.randn(H, W, generator=g, dtype=F64))

    def noisy(p: Tensor) -> Tensor:
        return p + noise * p[..., 2:3].abs() * torch.randn(p.shape, generator=g, dtype=F64)

    for i, j in edges:
        g = torch.Generator().manual_seed(seed * 1_000_003 + 1009 * int(i) + int(j))  # per pair: any order
        scale = float(torch.rand(1, generator=g, dtype=F64)) * 2.5 + 0.3
        pi = noisy(_in_camera(c2w[i], world[i]))
        pj = noisy(_in_camera(c2w[i], world[j]))
        far = overlap is not None and abs(i - j) > overlap
        if i != j:
            deg, shift = (bad_error_deg, bad_shift) if far else (pair_error_deg, 0.0)
            if deg or shift:
                R = _random_rotation(deg, g)
                centre = pj.reshape(-1, 3).mean(0)
                t = shift * med * torch.randn(3, generator=g, dtype=F64)
                pj = (pj - centre) @ R.T + centre + t
        out[0].append(scale * pi)
        out[1].append(scale * pj)
        out[2].append(conf(True))
        out[3].append(conf(not far))
    return tuple(torch.stack(x).to(dtype) for x in out)


def oneref_pairs(scene: dict, **kw) -> tuple[dict, dict, list[int]]:
    """The ``fwd``/``bwd`` inputs of :func:`frames_from_pairs` for anchor frame 0: pairs ``(0, i)``
    (``(0, 0)`` included) and ``(i, 0)``, from :func:`pair_predictions` with the same options (a pair's
    prediction depends only on the seed and the pair, so a graph containing these pairs sees the same)."""
    S = scene["depth"].shape[0]
    edges = [(0, i) for i in range(S)] + [(i, 0) for i in range(1, S)]
    pi, pj, ci, cj = pair_predictions(scene, edges, **kw)
    fwd = {"pts1": pi[None, :S], "conf1": ci[None, :S], "pts2": pj[None, :S], "conf2": cj[None, :S]}
    bwd = {"pts1": torch.cat([pi[:1], pi[S:]])[None], "conf1": torch.cat([ci[:1], ci[S:]])[None]}
    return fwd, bwd, [0] * S


def pose_depth_errors(out: dict, scene: dict) -> dict[str, Tensor]:
    """Per-frame errors ``[S]`` of one video's result (``out`` as returned by ``frames_from_pairs`` /
    ``global_align``, batch index 0) after one scale factor (median ratio of all depths):
    ``rot_deg`` (angle of the camera-from-camera-0 rotation error), ``trans`` (camera centre in camera
    0, in scene units), ``depth_absrel`` (mean |d − d*| / d*), ``focal_rel`` (|f − f*| / f*)."""
    c2w = scene["cam_to_world"]
    gt_rel = closed_form_inverse_se3(c2w[0])[None] @ c2w  # camera → camera 0
    pred_rel = out["cam_to_ref"][0].double()
    depth = out["depth"][0].double()
    s = float(scene["depth"].median() / depth.median())
    R_err = pred_rel[:, :3, :3] @ gt_rel[:, :3, :3].transpose(1, 2)
    cos = ((R_err.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return {
        "rot_deg": torch.rad2deg(torch.arccos(cos)),
        "trans": (s * pred_rel[:, :3, 3] - gt_rel[:, :3, 3]).norm(dim=-1),
        "depth_absrel": ((s * depth - scene["depth"]).abs() / scene["depth"]).mean((1, 2)),
        "focal_rel": (out["focal"][0].double() - scene["focal"]).abs() / scene["focal"],
    }
