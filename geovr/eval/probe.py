"""``geometry_probe``: how much 3D the frozen student's hidden states hold, measured by linear probes.

* Depth: for each probed layer, a ridge-regression probe maps a visual token's state ``[D]`` to the
  log of the mean ground-truth depth of its patch; scored on held-out videos by AbsRel
  (``mean |d̂ − d| / d``) and δ<1.25 (share of patches with ``max(d̂/d, d/d̂) < 1.25``).
* Rotation: a ridge probe maps the camera-token state ``c_t`` (``[D]``) of frame t ≥ 1 to the 9 entries
  of its rotation relative to the first frame, ``R_t R_0ᵀ`` (world-to-camera extrinsics; the first
  camera is the reference, as in the teachers' pose encodings); the prediction is projected onto
  SO(3) and scored by the geodesic angle (degrees).
  Without camera tokens the frame-mean of the last probed layer's grid stands in for ``c``.

Baselines reported beside the probes: depth predicted as the training set's mean log depth
(``depth_absrel_constant``) and the identity rotation (``rotation_error_identity_deg``).
Probes are closed-form (float64 numpy): features are standardised with the training statistics and
``W = (XᵀX + λ·N·I)⁻¹ Xᵀy`` (dual form when N < D), λ = ``ridge``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from geovr.errors import DataError

# -- closed-form probes (numpy only) ----------------------------------------------------------------


def ridge_fit(X: np.ndarray, Y: np.ndarray, ridge: float) -> dict:
    """Fit ``Y ≈ standardise(X) W + b``; X ``[N,D]``, Y ``[N,K]`` (or ``[N]``). Returns the probe."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    squeeze = Y.ndim == 1
    Y = Y[:, None] if squeeze else Y
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    Xs = (X - mu) / sd
    ym = Y.mean(0)
    Yc = Y - ym
    n, d = Xs.shape
    lam = max(float(ridge), 1e-10) * n
    if n < d:
        W = Xs.T @ np.linalg.solve(Xs @ Xs.T + lam * np.eye(n), Yc)
    else:
        W = np.linalg.solve(Xs.T @ Xs + lam * np.eye(d), Xs.T @ Yc)
    return {"W": W, "b": ym, "mu": mu, "sd": sd, "squeeze": squeeze}


def ridge_predict(probe: dict, X: np.ndarray) -> np.ndarray:
    """Apply a probe from :func:`ridge_fit` to X ``[N,D]`` → ``[N,K]`` (or ``[N]``)."""
    out = ((np.asarray(X, dtype=np.float64) - probe["mu"]) / probe["sd"]) @ probe["W"] + probe["b"]
    return out[:, 0] if probe["squeeze"] else out


def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AbsRel and δ<1.25 of positive depths ``pred`` vs ``gt`` (same shape)."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    ratio = np.maximum(pred / gt, gt / pred)
    return {"absrel": float(np.mean(np.abs(pred - gt) / gt)), "delta1": float(np.mean(ratio < 1.25))}


def depth_probe(train_x: np.ndarray, train_depth: np.ndarray, test_x: np.ndarray, test_depth: np.ndarray,
                ridge: float) -> dict[str, float]:
    """Fit a log-depth probe on ``train_x [N,D]`` / ``train_depth [N]`` (metres, > 0) and score it on the
    test set. Returns ``absrel``, ``delta1`` and the constant-prediction baseline ``absrel_constant``,
    ``delta1_constant``."""
    probe = ridge_fit(train_x, np.log(train_depth), ridge)
    pred = np.exp(np.clip(ridge_predict(probe, test_x), -10, 10))
    out = depth_metrics(pred, test_depth)
    const = depth_metrics(np.full_like(test_depth, math.exp(np.log(train_depth).mean()), dtype=np.float64),
                          test_depth)
    out.update(absrel_constant=const["absrel"], delta1_constant=const["delta1"])
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


def rotation_probe(train_x: np.ndarray, train_R: np.ndarray, test_x: np.ndarray, test_R: np.ndarray,
                   ridge: float) -> dict[str, float]:
    """Fit relative rotations ``[N,3,3]`` from features ``[N,D]``; mean geodesic error (degrees) of
    the probe (``rotation_error_deg``) and of the identity (``rotation_error_identity_deg``)."""
    probe = ridge_fit(train_x, train_R.reshape(len(train_R), 9), ridge)
    pred = project_so3(ridge_predict(probe, test_x).reshape(-1, 3, 3))
    ident = np.tile(np.eye(3), (len(test_R), 1, 1))
    return {"rotation_error_deg": float(rotation_error_deg(pred, test_R).mean()),
            "rotation_error_identity_deg": float(rotation_error_deg(ident, test_R).mean())}


def relative_rotations(extrinsics: np.ndarray) -> np.ndarray:
    """``[S,3,4]`` world-to-camera → ``[S-1,3,3]`` rotations ``R_t R_0ᵀ`` (t = 1..S-1)."""
    R = np.asarray(extrinsics, dtype=np.float64)[:, :3, :3]
    return R[1:] @ R[0].T


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


def default_layers(num_layers: int) -> list[int]:
    """About ¼, ½, ¾ and all of the LLM depth (hidden-state indices, 0 = embeddings)."""
    n = int(num_layers)
    return sorted({max(1, round(n * f)) for f in (0.25, 0.5, 0.75)} | {n})


class GeometryProbe:
    """Fits and scores the probes (:class:`geovr.eval.configs.GeometryProbeConfig`)."""

    name = "geometry_probe"

    def __init__(self, config, context):
        self.config = config
        self.context = context

    def dataset(self):
        """The ground-truth dataset, built through the registry."""
        from geovr.plugins import get_registry

        spec = get_registry().get("dataset", self.config.dataset)
        return spec.build(self.config.options(), self.context)

    def collect(self, backbone, layers: list[int]) -> list[dict]:
        """Forward ``num_samples`` videos through the frozen backbone; per video: ``{"hidden": {layer:
        [S',h,w,D]}, "camera": [S',D], "depth": [S',h,w] patch depth, "rotations": [S'-1,3,3]}``."""
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
                raise DataError(f"geometry_probe: dataset {self.config.dataset!r} gives no ground-truth depth/"
                                f"extrinsics")
            with torch.no_grad():
                out = backbone.forward(backbone.prepare(batch, with_answers=False), geometry=request)
            for b in range(batch.batch_size):
                hidden = {layer: out.hidden[layer][b].float().cpu().numpy() for layer in layers}
                grid = next(iter(hidden.values())).shape[:3]
                if out.camera is not None:
                    cam = out.camera[b].float().cpu().numpy()
                else:
                    cam = hidden[layers[-1]].mean(axis=(1, 2))
                extr = batch.extrinsics[b].double().numpy()
                group = extr.shape[0] // grid[0]
                videos.append({"hidden": hidden, "camera": cam, "depth": patch_depth(batch.depth[b], grid),
                               "rotations": relative_rotations(extr[::group][: grid[0]])})
        return videos

    def evaluate(self, backbone, output_dir) -> dict[str, float]:
        """Freeze ``backbone``, fit the probes on the first videos, score them on the rest, write reports."""
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
            for p, f in zip(params, flags):
                p.requires_grad_(f)
            if was_training and hasattr(backbone, "train"):
                backbone.train()
        n_train = min(max(1, int(round(len(videos) * c.train_fraction))), len(videos) - 1)
        train, test = videos[:n_train], videos[n_train:]
        results: dict[str, float] = {}
        per_layer = {}
        for layer in layers:
            def stack(vs, layer=layer):
                x = np.concatenate([v["hidden"][layer].reshape(-1, v["hidden"][layer].shape[-1]) for v in vs])
                d = np.concatenate([v["depth"].reshape(-1) for v in vs])
                keep = d > 0
                return x[keep], d[keep]

            m = depth_probe(*stack(train), *stack(test), c.ridge)
            per_layer[layer] = m
            results[f"depth_absrel_L{layer}"] = m["absrel"]
            results[f"depth_delta1_L{layer}"] = m["delta1"]
        results["depth_absrel_constant"] = per_layer[layers[0]]["absrel_constant"]
        results["depth_delta1_constant"] = per_layer[layers[0]]["delta1_constant"]

        def pairs(vs):
            return np.concatenate([v["camera"][1:] for v in vs]), np.concatenate([v["rotations"] for v in vs])

        if all(len(v["camera"]) > 1 for v in videos):
            results.update(rotation_probe(*pairs(train), *pairs(test), c.ridge))
        if _is_main_process():
            self.write(Path(output_dir or ".") / (c.output_subdir or "geometry_probe"), layers, per_layer,
                       results, n_train=len(train), n_test=len(test))
        return results

    def write(self, out: Path, layers, per_layer, results, *, n_train: int, n_test: int) -> None:
        """``probe.json``, ``probe.md`` and ``probe.png`` (AbsRel and δ<1.25 per layer)."""
        out.mkdir(parents=True, exist_ok=True)
        doc = {"evaluator": self.name, "layers": {str(k): v for k, v in per_layer.items()}, "results": results,
               "videos": {"train": n_train, "test": n_test}, "ridge": self.config.ridge,
               "camera_tokens": self.config.camera_tokens}
        (out / "probe.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        lines = ["## geometry_probe", "", f"videos: {n_train} fit / {n_test} held out", "",
                 "| layer | depth AbsRel ↓ | δ<1.25 ↑ |", "|---|---:|---:|"]
        lines += [f"| {k} | {v['absrel']:.4f} | {v['delta1']:.4f} |" for k, v in per_layer.items()]
        lines.append(f"| constant | {results['depth_absrel_constant']:.4f} | {results['depth_delta1_constant']:.4f} |")
        if "rotation_error_deg" in results:
            lines += ["", "| rotation probe | error (deg) ↓ |", "|---|---:|",
                      f"| camera states | {results['rotation_error_deg']:.3f} |",
                      f"| identity | {results['rotation_error_identity_deg']:.3f} |"]
        (out / "probe.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        from geovr.eval.report import bar_chart

        series = {"AbsRel": {f"L{k}": v["absrel"] for k, v in per_layer.items()},
                  "δ<1.25": {f"L{k}": v["delta1"] for k, v in per_layer.items()}}
        series["AbsRel"]["const"] = results["depth_absrel_constant"]
        series["δ<1.25"]["const"] = results["depth_delta1_constant"]
        bar_chart(series, out / "probe.png", title="depth probes per layer", ylabel="AbsRel / δ<1.25", fmt="%.3f")


def _is_main_process() -> bool:
    """False only on the non-main processes of a multi-process (accelerate) run."""
    from geovr.eval.qa import _partial_state

    state = _partial_state()
    return state is None or state.is_main_process


def build_geometry_probe(config, context) -> GeometryProbe:
    """Factory of the ``geometry_probe`` evaluator."""
    return GeometryProbe(config, context)
