"""``geometry_probe``: how much 3D the frozen student's hidden states hold, measured by linear probes.

* Depth: for each probed layer, a ridge-regression probe maps a visual token's state ``[D]`` to the
  log of the mean ground-truth depth of its patch; scored on held-out scenes by AbsRel
  (``mean |d̂ − d| / d``, lower is better) and δ<1.25 (share of patches with ``max(d̂/d, d/d̂) < 1.25``,
  higher is better). The headline ``depth_absrel``/``depth_delta1`` is the layer with the lowest
  cross-validated error on the *training* scenes (never chosen on the held-out ones).
* Relative pose: a ridge probe maps a per-frame state ``c_t`` (``[D]``) of frame t ≥ 1 to the
  rotation relative to the first frame, ``R_t R_0ᵀ`` (9 entries, projected onto SO(3)), and to the
  first-frame-relative camera centre ``R_0 (C_t − C_0)`` (metres). ``pose_error`` is the mean geodesic
  rotation error (degrees, lower is better); ``translation_error`` the mean centre error (metres).
  ``c_t`` is the camera-token state when the backbone inserts camera tokens (``camera_tokens = true``);
  otherwise — the student as it is deployed, with no extra tokens — the frame-mean of the visual
  tokens of each probed layer, and ``pose_layer`` is the layer with the lowest cross-validated error on
  the training scenes (chosen as for depth).

Every probe is ridge regression with an intercept on standardised features, its regularisation chosen
by grouped K-fold cross-validation on the training scenes (a scene's tokens never straddle folds) from
a grid that includes λ = ∞, i.e. the constant prediction, with the one-standard-error rule (the
strongest regularisation within one standard error of the best): a probe whose features hold nothing
reliable falls back to the constant. Videos are split by scene: the first ``train_fraction`` of the scenes fit,
the rest score.

Beside each probe the report gives the *constant baseline* — the training scenes' mean (log depth,
rotation projected onto SO(3), camera centre), i.e. exactly what the probe predicts when cross-validation
picks λ = ∞, so a probe that finds nothing reads as the constant, never below it by construction (the
identity rotation and zero motion are reported beside it) — and a *positive control*: the same probe, fitted the same way, on
inputs derived from the ground truth (random Fourier features of each patch's log depth and image
position for depth; the products ``vec(R_t) ⊗ vec(R_0)``, ``vec(R_0) ⊗ C_t`` and ``t_0`` for pose,
of which the targets are exactly linear), which shows what the probe reaches when the information is
there. All in float64 numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from geovr.errors import DataError

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

#: Default regularisation grid (λ relative to the number of fitted rows); ``inf`` = constant prediction.
DEFAULT_RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, math.inf)

# -- closed-form probes (numpy only) ----------------------------------------------------------------


def _standardise(X: np.ndarray):
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    return (X - mu) / sd, mu, sd


def _ridge_path(Xs: np.ndarray, Yc: np.ndarray, ridges: Sequence[float]) -> list[np.ndarray]:
    """Weights ``[D,K]`` of centred ridge regression for every λ of ``ridges``, from one eigendecomposition
    of the ``[D,D]`` Gram matrix ``XᵀX = V diag(e) Vᵀ``: ``W(λ) = V diag(1/(e + λn)) Vᵀ XᵀY``. For the
    tall matrices of the depth probe (10⁵ rows) this is tens of times faster than an SVD of X."""
    n = Xs.shape[0]
    eig, V = np.linalg.eigh(Xs.T @ Xs)
    eig = np.clip(eig, 0.0, None)  # round-off can leave tiny negative eigenvalues
    VtXtY = V.T @ (Xs.T @ Yc)
    out = []
    for lam in ridges:
        if math.isinf(lam):
            out.append(np.zeros((Xs.shape[1], Yc.shape[1])))
        else:
            out.append(V @ (VtXtY / (eig + max(float(lam), 1e-10) * n)[:, None]))
    return out


def group_folds(groups: Sequence | np.ndarray, k: int) -> list[np.ndarray]:
    """Boolean validation masks of ``min(k, #groups)`` folds; each group (scene) lies in one fold
    (groups dealt round-robin in order of first appearance)."""
    labels = np.asarray(groups).tolist()
    uniq = list(dict.fromkeys(labels))
    k = max(2, min(int(k), len(uniq)))
    fold_of = {g: i % k for i, g in enumerate(uniq)}
    f = np.array([fold_of[g] for g in labels])
    return [f == i for i in range(k)]


def choose_ridge(
    X: np.ndarray,
    Y: np.ndarray,
    groups: Sequence | np.ndarray,
    ridges: Sequence[float] = DEFAULT_RIDGES,
    folds: int = 5,
) -> tuple[float, np.ndarray]:
    """Grouped K-fold cross-validation with the one-standard-error rule: the *largest* λ of ``ridges``
    whose mean validation MSE is within one standard error (over folds) of the lowest, and the mean
    validation MSE per λ. The rule prefers the constant (``inf``) unless the features beat it by more
    than the fold-to-fold noise, which keeps held-out scores from falling below the constant's.
    Fewer than 2 groups → the largest λ."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    ridges = list(ridges)
    if len(set(np.asarray(groups).tolist())) < 2:
        return max(ridges), np.full(len(ridges), np.nan)
    rows = []
    for val in group_folds(groups, folds):
        Xs, mu, sd = _standardise(X[~val])
        ym = Y[~val].mean(0)
        Xv = (X[val] - mu) / sd
        rows.append([float(((Xv @ W + ym - Y[val]) ** 2).mean()) for W in _ridge_path(Xs, Y[~val] - ym, ridges)])
    per_fold = np.asarray(rows)  # [folds, ridges]
    mse = per_fold.mean(0)
    se = per_fold.std(0, ddof=1) / math.sqrt(len(per_fold))
    best = int(np.argmin(mse))
    ok = [j for j in range(len(ridges)) if mse[j] <= mse[best] + se[best]]
    return float(max(ridges[j] for j in ok)), mse


def ridge_fit(
    X: np.ndarray,
    Y: np.ndarray,
    ridge: float | Sequence[float] = DEFAULT_RIDGES,
    *,
    groups: Sequence | np.ndarray | None = None,
    folds: int = 5,
) -> dict:
    """Fit ``Y ≈ standardise(X) W + b`` (an intercept); X ``[N,D]``, Y ``[N,K]`` (or ``[N]``).

    ``ridge``: λ relative to N (``W = (XᵀX + λ·N·I)⁻¹ Xᵀy``; ``inf`` = constant), or a grid chosen from
    by :func:`choose_ridge` over ``groups`` (one label per row; rows without groups are their own
    group). Returns the probe (``W``, ``b``, ``mu``, ``sd``, ``ridge`` chosen, ``cv_mse``)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    squeeze = Y.ndim == 1
    Y = Y[:, None] if squeeze else Y
    cv = None
    if isinstance(ridge, (int, float)):
        lam = float(ridge)
    else:
        lam, cv = choose_ridge(X, Y, np.arange(len(X)) if groups is None else groups, ridge, folds)
    Xs, mu, sd = _standardise(X)
    ym = Y.mean(0)
    (W,) = _ridge_path(Xs, Y - ym, [lam])
    return {
        "W": W,
        "b": ym,
        "mu": mu,
        "sd": sd,
        "squeeze": squeeze,
        "ridge": lam,
        "cv_mse": None if cv is None else cv.tolist(),
    }


def ridge_predict(probe: dict, X: np.ndarray) -> np.ndarray:
    """Apply a probe from :func:`ridge_fit` to X ``[N,D]`` → ``[N,K]`` (or ``[N]``)."""
    out = ((np.asarray(X, dtype=np.float64) - probe["mu"]) / probe["sd"]) @ probe["W"] + probe["b"]
    return out[:, 0] if probe["squeeze"] else out


def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AbsRel (lower is better) and δ<1.25 (higher is better) of positive depths ``pred`` vs ``gt``."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    ratio = np.maximum(pred / gt, gt / pred)
    return {"absrel": float(np.mean(np.abs(pred - gt) / gt)), "delta1": float(np.mean(ratio < 1.25))}


def _video_mean(values: np.ndarray, videos: Sequence | np.ndarray) -> np.ndarray:
    """Per-row mean of ``values`` over the rows of the same video."""
    _, inv = np.unique(np.asarray(videos), return_inverse=True)
    sums = np.bincount(inv, weights=values)
    return (sums / np.bincount(inv))[inv]


def depth_probe(
    train_x: np.ndarray,
    train_depth: np.ndarray,
    test_x: np.ndarray,
    test_depth: np.ndarray,
    ridge: float | Sequence[float] = DEFAULT_RIDGES,
    *,
    groups: Sequence | np.ndarray | None = None,
    folds: int = 5,
    test_groups: Sequence | np.ndarray | None = None,
) -> dict[str, float]:
    """Fit a log-depth probe on ``train_x [N,D]`` / ``train_depth [N]`` (metres, > 0; ``groups`` = scene
    of each row for the cross-validation) and score it on the test set. Returns ``absrel``, ``delta1``,
    ``ridge`` (chosen λ), ``cv_mse`` (best validation MSE of log depth) and the constant-prediction
    baseline ``absrel_constant``, ``delta1_constant``.

    With ``groups`` and ``test_groups`` (the video of each row) also the *scale-aligned* scores
    ``absrel_aligned``/``delta1_aligned`` (+ ``_constant``): a second probe fits log depth relative to
    its video's mean log depth, and its predictions are scored after adding back the test video's mean
    (median-scaling style evaluation: the depth layout, not the scene's scale; the constant is then
    the video's mean depth everywhere)."""
    logd = np.log(train_depth)
    probe = ridge_fit(train_x, logd, ridge, groups=groups, folds=folds)
    pred = np.exp(np.clip(ridge_predict(probe, test_x), -10, 10))
    out = depth_metrics(pred, test_depth)
    const = depth_metrics(np.full_like(test_depth, math.exp(logd.mean()), dtype=np.float64), test_depth)
    out.update(
        absrel_constant=const["absrel"],
        delta1_constant=const["delta1"],
        ridge=probe["ridge"],
        cv_mse=min(probe["cv_mse"]) if probe["cv_mse"] else float("nan"),
    )
    if groups is not None and test_groups is not None:
        rel = ridge_fit(train_x, logd - _video_mean(logd, groups), ridge, groups=groups, folds=folds)
        base = _video_mean(np.log(test_depth), test_groups)
        aligned = depth_metrics(np.exp(np.clip(ridge_predict(rel, test_x), -10, 10) + base), test_depth)
        flat = depth_metrics(np.exp(base), test_depth)
        out.update(
            absrel_aligned=aligned["absrel"],
            delta1_aligned=aligned["delta1"],
            absrel_aligned_constant=flat["absrel"],
            delta1_aligned_constant=flat["delta1"],
            cv_mse_aligned=min(rel["cv_mse"]) if rel["cv_mse"] else float("nan"),
        )
    return out


def project_so3(M: np.ndarray) -> np.ndarray:
    """Nearest rotation matrices (SVD) to ``M [N,3,3]``."""
    U, _, Vt = np.linalg.svd(M)
    det = np.sign(np.linalg.det(U @ Vt))
    D = np.tile(np.eye(3), (M.shape[0], 1, 1))
    D[:, 2, 2] = det
    return U @ D @ Vt


def rotation_error_deg(R_pred: np.ndarray, R_gt: np.ndarray) -> np.ndarray:
    """Geodesic angle (degrees) between rotations ``[N,3,3]`` → ``[N]``."""
    tr = np.einsum("nij,nij->n", R_pred, R_gt)  # trace(R_predᵀ R_gt)
    return np.degrees(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))


def rotation_probe(
    train_x: np.ndarray,
    train_R: np.ndarray,
    test_x: np.ndarray,
    test_R: np.ndarray,
    ridge: float | Sequence[float] = DEFAULT_RIDGES,
    *,
    groups: Sequence | None = None,
    folds: int = 5,
    train_t: np.ndarray | None = None,
    test_t: np.ndarray | None = None,
) -> dict[str, float]:
    """Fit relative rotations ``[N,3,3]`` (and, when given, relative camera centres ``[N,3]``, metres)
    from features ``[N,D]``. Returns the mean geodesic error (degrees) of the probe
    (``rotation_error_deg``), of the constant prediction (``rotation_error_constant_deg``: the training
    rows' mean rotation projected onto SO(3), which is what the probe predicts at λ = ∞) and of the
    identity (``rotation_error_identity_deg``); with centres the mean centre error of the probe
    (``translation_error``), of the constant (``translation_error_constant``: the training mean centre,
    the λ = ∞ prediction) and of no motion (``translation_error_zero``)."""
    train_R = np.asarray(train_R, dtype=np.float64)
    probe = ridge_fit(train_x, train_R.reshape(len(train_R), 9), ridge, groups=groups, folds=folds)
    pred = project_so3(ridge_predict(probe, test_x).reshape(-1, 3, 3))
    ident = np.tile(np.eye(3), (len(test_R), 1, 1))
    mean_R = np.repeat(project_so3(train_R.mean(0, keepdims=True)), len(test_R), 0)
    out = {
        "rotation_error_deg": float(rotation_error_deg(pred, test_R).mean()),
        "rotation_error_constant_deg": float(rotation_error_deg(mean_R, test_R).mean()),
        "rotation_error_identity_deg": float(rotation_error_deg(ident, test_R).mean()),
        "ridge": probe["ridge"],
        "cv_mse": min(probe["cv_mse"]) if probe["cv_mse"] else float("nan"),
    }
    if train_t is not None and test_t is not None:  # its own probe: its own λ
        probe_t = ridge_fit(train_x, train_t, ridge, groups=groups, folds=folds)
        test_t = np.asarray(test_t, dtype=np.float64)
        out["translation_error"] = float(np.linalg.norm(ridge_predict(probe_t, test_x) - test_t, axis=1).mean())
        out["translation_error_constant"] = float(
            np.linalg.norm(np.asarray(train_t, dtype=np.float64).mean(0) - test_t, axis=1).mean()
        )
        out["translation_error_zero"] = float(np.linalg.norm(test_t, axis=1).mean())
        out["ridge_translation"] = probe_t["ridge"]
    return out


def relative_rotations(extrinsics: np.ndarray) -> np.ndarray:
    """``[S,3,4]`` world-to-camera → ``[S-1,3,3]`` rotations ``R_t R_0ᵀ`` (t = 1..S-1)."""
    R = np.asarray(extrinsics, dtype=np.float64)[:, :3, :3]
    return R[1:] @ R[0].T


def relative_centres(extrinsics: np.ndarray) -> np.ndarray:
    """``[S,3,4]`` world-to-camera → ``[S-1,3]`` camera centres of frames 1..S-1 in the first camera's
    frame, ``R_0 (C_t − C_0)`` with ``C = −Rᵀt`` (world units)."""
    E = np.asarray(extrinsics, dtype=np.float64)
    R, t = E[:, :3, :3], E[:, :3, 3]
    C = -np.einsum("sji,sj->si", R, t)
    return (C[1:] - C[0]) @ R[0].T


def pose_control_features(extrinsics: np.ndarray) -> np.ndarray:
    """Ground-truth-derived pose inputs ``[S-1, 111]`` of frames 1..S-1: ``vec(R_t) ⊗ vec(R_0)``,
    ``vec(R_0) ⊗ C_t`` and ``t_0``, of which :func:`relative_rotations` and :func:`relative_centres`
    are exact linear functions (the positive control of the pose probe)."""
    E = np.asarray(extrinsics, dtype=np.float64)
    R, t = E[:, :3, :3], E[:, :3, 3]
    C = -np.einsum("sji,sj->si", R, t)
    r0 = R[0].reshape(9)
    rr = np.einsum("si,j->sij", R[1:].reshape(-1, 9), r0).reshape(-1, 81)
    rc = np.einsum("i,sj->sij", r0, C[1:]).reshape(-1, 27)  # R_0 C_t is linear in these
    return np.concatenate([rr, rc, np.repeat(t[:1], len(R) - 1, 0)], 1)


def depth_control_features(depth_patches: np.ndarray, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Ground-truth-derived depth inputs: random Fourier features ``[S,h,w,dim]`` of each patch's
    (log depth, row, column) (the positive control of the depth probe)."""
    d = np.asarray(depth_patches, dtype=np.float64)
    S, h, w = d.shape
    rows, cols = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    x = np.stack([np.log(np.clip(d, 1e-6, None)), np.broadcast_to(rows, d.shape), np.broadcast_to(cols, d.shape)], -1)
    freqs = np.random.default_rng(seed).normal(size=(3, dim // 2)) * np.array([[1.0], [0.5], [0.5]])
    proj = x @ freqs
    return np.concatenate([np.sin(proj), np.cos(proj)], -1)


def patch_depth(depth, grid_shape: tuple[int, int, int]) -> np.ndarray:
    """Mean GT depth per token patch: depth ``[S,H,W]`` (torch or numpy) → ``[S',h,w]`` for a token grid of
    ``S'`` frames (``S`` divisible by ``S'``: consecutive frames merged temporally are averaged)."""
    import torch
    import torch.nn.functional as F

    d = torch.as_tensor(depth).double()
    s2, h, w = grid_shape
    if d.shape[0] % s2:
        raise DataError(f"token grid has {s2} frames, not a divisor of the {d.shape[0]} GT depth frames")
    pooled = F.adaptive_avg_pool2d(d[:, None], (h, w))[:, 0]  # [S,h,w]
    return pooled.reshape(s2, -1, h, w).mean(1).numpy()


# -- the evaluator ------------------------------------------------------------------------------------


def best_by_cv(per_layer: dict[int, dict], key: str) -> int:
    """The layer of ``per_layer`` (``{layer: probe scores}``) with the lowest cross-validated error
    ``scores[key]`` on the training scenes; a non-finite error never wins; ties go to the lower layer."""
    return min(per_layer, key=lambda k: (per_layer[k][key] if math.isfinite(per_layer[k][key]) else math.inf, k))


def default_layers(num_layers: int) -> list[int]:
    """About ¼, ½, ¾ and all of the LLM depth (hidden-state indices, 0 = embeddings)."""
    n = int(num_layers)
    return sorted({max(1, round(n * f)) for f in (0.25, 0.5, 0.75)} | {n})


#: Direction of every headline metric: True = higher is better.
HIGHER_IS_BETTER = {
    "depth_absrel": False,
    "depth_delta1": True,
    "depth_aligned_absrel": False,
    "depth_aligned_delta1": True,
    "pose_error": False,
    "translation_error": False,
}


class GeometryProbe:
    """Fits and scores the probes (:class:`geovr.eval.configs.GeometryProbeConfig`)."""

    name = "geometry_probe"

    def __init__(self, config, context: BuildContext):
        self.config = config
        self.context = context

    def dataset(self):
        """The ground-truth dataset, built through the registry."""
        from geovr.plugins import get_registry

        spec = get_registry().get("dataset", self.config.dataset)
        return spec.build(self.config.options(), self.context)

    @property
    def ridges(self):
        r = self.config.ridge
        return DEFAULT_RIDGES if r is None else (float(r) if isinstance(r, (int, float)) else [float(v) for v in r])

    def collect(self, backbone, layers: list[int]) -> list[dict]:
        """Forward ``num_samples`` videos through the frozen backbone; per video: ``{"scene": id,
        "hidden": {layer: [S',h,w,D]}, "camera": [S',D] or None (no camera tokens), "depth": [S',h,w] patch depth,
        "rotations": [S'-1,3,3], "centres": [S'-1,3], "pose_control": [S'-1,111]}``."""
        import torch
        from tqdm.auto import tqdm

        from geovr.data.collate import collate
        from geovr.protocols import GeometryRequest

        ds = self.dataset()
        n = min(self.config.num_samples, len(ds))
        if n < 2:
            raise DataError(f"geometry_probe: dataset {self.config.dataset!r} has {len(ds)} sample(s); need >= 2")
        request = GeometryRequest(layers=layers, camera_tokens=self.config.camera_tokens)
        videos: list[dict] = []
        bs = self.config.batch_size
        for start in tqdm(range(0, n, bs), desc="geometry_probe", disable=not self.config.progress, leave=False):
            samples = [ds[i] for i in range(start, min(n, start + bs))]
            batch = collate(samples)
            if batch.depth is None or batch.extrinsics is None:
                raise DataError(
                    f"geometry_probe: dataset {self.config.dataset!r} gives no ground-truth depth/extrinsics"
                )
            with torch.no_grad():
                out = backbone.forward(backbone.prepare(batch, with_answers=False), geometry=request)
            for b in range(batch.batch_size):
                hidden = {layer: out.hidden[layer][b].float().cpu().numpy() for layer in layers}
                grid = next(iter(hidden.values())).shape[:3]
                cam = out.camera[b].float().cpu().numpy() if out.camera is not None else None
                extr = batch.extrinsics[b].double().numpy()
                group = extr.shape[0] // grid[0]
                used = extr[::group][: grid[0]]
                scene = samples[b].get("scene_id", start + b)
                videos.append(
                    {
                        "scene": str(scene),
                        "hidden": hidden,
                        "camera": cam,
                        "depth": patch_depth(batch.depth[b], grid),
                        "rotations": relative_rotations(used),
                        "centres": relative_centres(used),
                        "pose_control": pose_control_features(used),
                    }
                )
        return videos

    def split(self, videos: list[dict]) -> tuple[list[dict], list[dict]]:
        """Scenes (not frames or videos) split: the first ``train_fraction`` of the scenes fit, the rest score."""
        scenes = list(dict.fromkeys(v["scene"] for v in videos))
        if len(scenes) < 2:
            raise DataError("geometry_probe: the videos show fewer than 2 scenes; cannot hold scenes out")
        n_train = min(max(1, int(round(len(scenes) * self.config.train_fraction))), len(scenes) - 1)
        fit = set(scenes[:n_train])
        return [v for v in videos if v["scene"] in fit], [v for v in videos if v["scene"] not in fit]

    def evaluate(self, backbone, output_dir) -> dict[str, float]:
        """Freeze ``backbone``, fit the probes on the training scenes (λ and layer by cross-validation on
        them), score them on the held-out scenes, write reports."""
        c = self.config
        layers = sorted(set(c.layers)) or default_layers(getattr(backbone, "num_layers", 1))
        params = list(backbone.parameters()) if hasattr(backbone, "parameters") else []
        flags = [p.requires_grad for p in params]
        was_training = getattr(backbone, "training", False)
        for p in params:
            p.requires_grad_(False)
        if hasattr(backbone, "eval"):
            backbone.eval()
        try:
            videos = self.collect(backbone, layers)
        finally:
            for p, f in zip(params, flags, strict=False):
                p.requires_grad_(f)
            if was_training and hasattr(backbone, "train"):
                backbone.train()
        train, test = self.split(videos)
        folds = c.cv_folds

        def depth_rows(vs, feats):
            x = np.concatenate([feats(v).reshape(-1, feats(v).shape[-1]) for v in vs])
            d = np.concatenate([v["depth"].reshape(-1) for v in vs])
            g = np.concatenate([[v["scene"]] * v["depth"].size for v in vs])
            keep = d > 0
            return x[keep], d[keep], g[keep]

        results: dict[str, float] = {}
        per_layer = {}
        for layer in layers:
            xtr, dtr, gtr = depth_rows(train, lambda v, layer=layer: v["hidden"][layer])
            xte, dte, gte = depth_rows(test, lambda v, layer=layer: v["hidden"][layer])
            m = depth_probe(xtr, dtr, xte, dte, self.ridges, groups=gtr, folds=folds, test_groups=gte)
            per_layer[layer] = m
            results[f"depth_absrel_L{layer}"] = m["absrel"]
            results[f"depth_delta1_L{layer}"] = m["delta1"]
        best = best_by_cv(per_layer, "cv_mse")
        first = per_layer[layers[0]]
        ctl_tr = depth_rows(train, lambda v: depth_control_features(v["depth"]))
        ctl_te = depth_rows(test, lambda v: depth_control_features(v["depth"]))
        ctl = depth_probe(
            ctl_tr[0],
            ctl_tr[1],
            ctl_te[0],
            ctl_te[1],
            self.ridges,
            groups=ctl_tr[2],
            folds=folds,
            test_groups=ctl_te[2],
        )
        best_al = best_by_cv(per_layer, "cv_mse_aligned")
        results.update(
            depth_absrel=per_layer[best]["absrel"],
            depth_delta1=per_layer[best]["delta1"],
            depth_layer=float(best),
            depth_absrel_constant=first["absrel_constant"],
            depth_delta1_constant=first["delta1_constant"],
            depth_absrel_control=ctl["absrel"],
            depth_delta1_control=ctl["delta1"],
            depth_aligned_absrel=per_layer[best_al]["absrel_aligned"],
            depth_aligned_delta1=per_layer[best_al]["delta1_aligned"],
            depth_aligned_absrel_constant=first["absrel_aligned_constant"],
            depth_aligned_delta1_constant=first["delta1_aligned_constant"],
            depth_aligned_absrel_control=ctl["absrel_aligned"],
            depth_aligned_delta1_control=ctl["delta1_aligned"],
        )

        def pairs(vs, feats):
            x = np.concatenate([feats(v) for v in vs])
            g = np.concatenate([[v["scene"]] * len(v["rotations"]) for v in vs])
            return (x, np.concatenate([v["rotations"] for v in vs]), g, np.concatenate([v["centres"] for v in vs]))

        def fit_pose(feats):
            xtr, rtr, gtr, ttr = pairs(train, feats)
            xte, rte, _, tte = pairs(test, feats)
            return rotation_probe(xtr, rtr, xte, rte, self.ridges, groups=gtr, folds=folds, train_t=ttr, test_t=tte)

        pose = {}
        if all(len(v["rotations"]) > 0 for v in videos):
            if all(v["camera"] is not None for v in videos):  # camera-token states
                pose[""] = fit_pose(lambda v: v["camera"][1:])
                pose_layer = -1.0
            else:  # the deployed student: frame-mean of the visual tokens, layer chosen by CV on training scenes
                by_layer = {
                    layer: fit_pose(lambda v, layer=layer: v["hidden"][layer][1:].mean(axis=(1, 2))) for layer in layers
                }
                pose_layer = float(best_by_cv(by_layer, "cv_mse"))
                pose[""] = by_layer[int(pose_layer)]
                for layer, m in by_layer.items():
                    results[f"pose_error_L{layer}"] = m["rotation_error_deg"]
            pose["_control"] = fit_pose(lambda v: v["pose_control"])
            m, ctl_p = pose[""], pose["_control"]
            # the constant baseline is the λ = ∞ probe (training mean), the prediction the probe falls back
            # to when its features hold nothing; identity / no motion are reported beside it
            results.update(
                rotation_error_deg=m["rotation_error_deg"],
                rotation_error_identity_deg=m["rotation_error_identity_deg"],
                pose_error=m["rotation_error_deg"],
                pose_layer=pose_layer,
                pose_error_constant=m["rotation_error_constant_deg"],
                pose_error_control=ctl_p["rotation_error_deg"],
                translation_error=m["translation_error"],
                translation_error_constant=m["translation_error_constant"],
                translation_error_zero=m["translation_error_zero"],
                translation_error_control=ctl_p["translation_error"],
            )
        if _is_main_process():
            self.write(
                Path(output_dir or ".") / (c.output_subdir or "geometry_probe"),
                layers,
                per_layer,
                results,
                pose,
                n_train=len(train),
                n_test=len(test),
                scenes=(len({v["scene"] for v in train}), len({v["scene"] for v in test})),
            )
        return results

    def write(
        self,
        out: Path,
        layers,
        per_layer,
        results,
        pose=None,
        *,
        n_train: int,
        n_test: int,
        scenes: tuple[int, int] = (0, 0),
    ) -> None:
        """``probe.json``, ``probe.md`` and ``probe.png`` (AbsRel and δ<1.25 per layer, baseline, control)."""
        out.mkdir(parents=True, exist_ok=True)
        doc = {
            "evaluator": self.name,
            "layers": {str(k): v for k, v in per_layer.items()},
            "results": results,
            "pose": pose or {},
            "videos": {"train": n_train, "test": n_test},
            "scenes": {"train": scenes[0], "test": scenes[1]},
            "ridge_grid": list(map(str, np.atleast_1d(np.asarray(self.ridges, dtype=float)))),
            "cv_folds": self.config.cv_folds,
            "camera_tokens": self.config.camera_tokens,
            "higher_is_better": HIGHER_IS_BETTER,
        }
        (out / "probe.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        r = results
        lines = [
            "## geometry_probe",
            "",
            f"videos: {n_train} fit / {n_test} held out ({scenes[0]} / {scenes[1]} scenes, split by scene); "
            f"ridge λ and the headline layer chosen by {self.config.cv_folds}-fold cross-validation over the "
            f"training scenes.",
            "",
            "| depth probe | AbsRel (lower is better) | δ<1.25 (higher is better) | λ |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| layer {k}{' (chosen)' if float(k) == r['depth_layer'] else ''} | {v['absrel']:.4f} | "
            f"{v['delta1']:.4f} | {v['ridge']:g} |"
            for k, v in per_layer.items()
        ]
        lines.append(f"| constant baseline | {r['depth_absrel_constant']:.4f} | {r['depth_delta1_constant']:.4f} | |")
        lines.append(
            f"| positive control (GT-derived inputs) | {r['depth_absrel_control']:.4f} | "
            f"{r['depth_delta1_control']:.4f} | |"
        )
        lines += [
            "",
            "Scale-aligned depth (layout only: each held-out video's mean log depth added back):",
            "",
            "| depth probe, scale-aligned | AbsRel (lower is better) | δ<1.25 (higher is better) |",
            "|---|---:|---:|",
            f"| best layer by cross-validation | {r['depth_aligned_absrel']:.4f} | {r['depth_aligned_delta1']:.4f} |",
            f"| constant baseline (video mean) | {r['depth_aligned_absrel_constant']:.4f} | "
            f"{r['depth_aligned_delta1_constant']:.4f} |",
            f"| positive control | {r['depth_aligned_absrel_control']:.4f} | {r['depth_aligned_delta1_control']:.4f} |",
        ]
        if "pose_error" in r:
            layer = int(r.get("pose_layer", -1))
            pose_input = "camera states" if layer < 0 else f"frame-mean of layer {layer} (chosen by cross-validation)"
            lines += [
                "",
                "| relative pose probe | rotation error, deg (lower is better) | centre error, m (lower is better) |",
                "|---|---:|---:|",
                f"| {pose_input} | {r['pose_error']:.3f} | {r['translation_error']:.3f} |",
                f"| constant baseline (training mean; the probe at λ = ∞) | {r['pose_error_constant']:.3f} | "
                f"{r['translation_error_constant']:.3f} |",
                f"| identity rotation, no motion | {r['rotation_error_identity_deg']:.3f} | "
                f"{r['translation_error_zero']:.3f} |",
                f"| positive control (GT-derived inputs) | {r['pose_error_control']:.3f} | "
                f"{r['translation_error_control']:.3f} |",
            ]
        (out / "probe.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        from geovr.eval.report import bar_chart

        series = {
            "AbsRel ↓": {f"L{k}": v["absrel"] for k, v in per_layer.items()},
            "δ<1.25 ↑": {f"L{k}": v["delta1"] for k, v in per_layer.items()},
        }
        for name, key in (("const", "constant"), ("control", "control")):
            series["AbsRel ↓"][name] = r[f"depth_absrel_{key}"]
            series["δ<1.25 ↑"][name] = r[f"depth_delta1_{key}"]
        bar_chart(
            series,
            out / "probe.png",
            title="depth probes per layer (held-out scenes)",
            ylabel="AbsRel / δ<1.25",
            fmt="%.3f",
        )


def _is_main_process() -> bool:
    """False only on the non-main processes of a multi-process (accelerate) run."""
    from geovr.eval.qa import _partial_state

    state = _partial_state()
    return state is None or state.is_main_process


def build_geometry_probe(config, context: BuildContext) -> GeometryProbe:
    """Factory of the ``geometry_probe`` evaluator."""
    return GeometryProbe(config, context)
