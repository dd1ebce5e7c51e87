"""Geometry probes: closed-form ridge probes recover depth/rotation from features that hold them and
fail on noise, so the probe measures something."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geovr.eval.probe import (
    default_layers,
    depth_probe,
    patch_depth,
    project_so3,
    relative_rotations,
    ridge_fit,
    ridge_predict,
    rotation_error_deg,
    rotation_probe,
)


def _depth_fields(rng, videos=8, frames=4, h=6, w=6):
    """Plausible per-patch depths: a tilted plane per frame plus box-like bumps, 0.5–8 m."""
    ys, xs = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = []
    for _ in range(videos * frames):
        base = rng.uniform(1.0, 4.0) + rng.uniform(-1, 1) * xs + rng.uniform(0, 2.5) * ys
        bump = (rng.random((h, w)) < 0.2) * rng.uniform(-0.6, 0.6)
        out.append(np.clip(base + bump, 0.5, 8.0))
    return np.stack(out).reshape(videos, frames * h * w)


def test_ridge_fit_recovers_linear_map():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) * [1, 10, 0.1, 3, 1] + 7
    W = rng.normal(size=(5, 2))
    Y = X @ W + [1.0, -2.0]
    probe = ridge_fit(X, Y, ridge=1e-9)
    Xt = rng.normal(size=(50, 5)) * [1, 10, 0.1, 3, 1] + 7
    assert np.abs(ridge_predict(probe, Xt) - (Xt @ W + [1.0, -2.0])).max() < 1e-5
    # dual form (N < D) gives the same predictions as the primal form would
    Xw = rng.normal(size=(10, 40))
    yw = rng.normal(size=10)
    dual = ridge_fit(Xw, yw, ridge=0.5)
    Xs = (Xw - Xw.mean(0)) / Xw.std(0)
    primal = np.linalg.solve(Xs.T @ Xs + 0.5 * 10 * np.eye(40), Xs.T @ (yw - yw.mean()))
    assert np.allclose(dual["W"][:, 0], primal, atol=1e-8)


def test_depth_probe_oracle_vs_noise():
    rng = np.random.default_rng(1)
    depth = _depth_fields(rng)  # [videos, patches]
    D = 32
    n = depth.size
    noise = rng.normal(size=(n, D))
    # oracle features: log depth mixed into every dimension plus noise (a rotated, noisy embedding)
    mix = rng.normal(size=(1, D))
    oracle = np.log(depth.reshape(-1, 1)) @ mix + 0.05 * rng.normal(size=(n, D))
    tr, te = slice(0, 6 * depth.shape[1]), slice(6 * depth.shape[1], n)
    d = depth.reshape(-1)
    good = depth_probe(oracle[tr], d[tr], oracle[te], d[te], ridge=1e-3)
    bad = depth_probe(noise[tr], d[tr], noise[te], d[te], ridge=1e-3)
    assert good["absrel"] < 0.03 and good["delta1"] > 0.99, good
    assert bad["absrel"] > 0.25 and bad["delta1"] < 0.6, bad
    # noise is no better than predicting the mean depth
    assert bad["absrel"] > 0.9 * bad["absrel_constant"]
    assert good["absrel"] < 0.1 * good["absrel_constant"]


def _random_rotations(rng, n):
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


def test_rotation_tools():
    rng = np.random.default_rng(2)
    R = _random_rotations(rng, 5)
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(project_so3(R + 1e-3 * rng.normal(size=R.shape)), R, atol=5e-3)
    assert np.allclose(rotation_error_deg(R, R), 0, atol=1e-5)
    rz = np.array([[[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]])  # 90° about z
    assert rotation_error_deg(rz, np.eye(3)[None])[0] == pytest.approx(90.0)
    extr = np.concatenate([R[:3], np.zeros((3, 3, 1))], axis=2)
    rel = relative_rotations(extr)
    assert rel.shape == (2, 3, 3) and np.allclose(rel[0], R[1] @ R[0].T)


def test_rotation_probe_oracle_vs_noise():
    rng = np.random.default_rng(3)
    # small head turns (yaw/pitch up to ~40°), like camera motion in a room video
    angles = rng.uniform(-0.7, 0.7, size=(240, 2))
    cy, sy, cp, sp = np.cos(angles[:, 0]), np.sin(angles[:, 0]), np.cos(angles[:, 1]), np.sin(angles[:, 1])
    yaw = np.stack(
        [np.stack([cy, 0 * cy, sy], -1), np.stack([0 * cy, 1 + 0 * cy, 0 * cy], -1), np.stack([-sy, 0 * cy, cy], -1)], 1
    )
    pitch = np.stack(
        [np.stack([1 + 0 * cp, 0 * cp, 0 * cp], -1), np.stack([0 * cp, cp, -sp], -1), np.stack([0 * cp, sp, cp], -1)], 1
    )
    R = pitch @ yaw
    mix = rng.normal(size=(9, 24))
    oracle = R.reshape(-1, 9) @ mix + 0.01 * rng.normal(size=(240, 24))
    noise = rng.normal(size=(240, 24))
    good = rotation_probe(oracle[:180], R[:180], oracle[180:], R[180:], ridge=1e-4)
    bad = rotation_probe(noise[:180], R[:180], noise[180:], R[180:], ridge=1e-4)
    assert good["rotation_error_deg"] < 2.0, good
    assert bad["rotation_error_deg"] > 15.0, bad
    assert good["rotation_error_identity_deg"] == bad["rotation_error_identity_deg"] > 20.0
    # the constant baseline is the λ = ∞ probe itself (training mean), so the fallback reads as the constant
    t = rng.normal(size=(240, 3)) + np.array([0.5, 0.0, 1.0])
    flat = rotation_probe(noise[:180], R[:180], noise[180:], R[180:], ridge=math.inf, train_t=t[:180], test_t=t[180:])
    assert flat["rotation_error_deg"] == pytest.approx(flat["rotation_error_constant_deg"], abs=1e-9)
    assert flat["translation_error"] == pytest.approx(flat["translation_error_constant"], abs=1e-12)
    # ... which is not "no motion": the mean centre is far from zero here
    assert flat["translation_error_constant"] < flat["translation_error_zero"] - 0.3, flat


def test_patch_depth_pools_space_and_time():
    depth = np.arange(4 * 4 * 6, dtype=np.float64).reshape(4, 4, 6) + 1
    out = patch_depth(depth, (2, 2, 3))
    assert out.shape == (2, 2, 3)
    assert out[0, 0, 0] == pytest.approx(depth[0:2, 0:2, 0:2].mean())
    with pytest.raises(Exception, match="divisor"):
        patch_depth(depth, (3, 2, 3))


def test_default_layers():
    assert default_layers(2) == [1, 2]
    assert default_layers(28) == [7, 14, 21, 28]


def test_cross_validated_probe_never_worse_than_constant_on_held_out_scenes():
    """Features with little or no depth information, many draws: the probe fitted with λ chosen by
    grouped cross-validation on the training scenes is never worse than the training mean on held-out
    scenes (beyond 2 %); a fixed small λ (the old probe) is much worse on the same data."""
    from geovr.eval.probe import DEFAULT_RIDGES

    worse_fixed = 0
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        depth = _depth_fields(rng, videos=10, frames=2, h=4, w=4)  # [scene, patches]
        n_per = depth.shape[1]
        D = 200  # about as many features as fitted rows: an unregularised probe overfits
        weak = 0.05 * np.log(depth.reshape(-1, 1)) @ rng.normal(size=(1, D)) + rng.normal(size=(depth.size, D))
        d = depth.reshape(-1)
        groups = np.repeat(np.arange(10), n_per)
        tr, te = groups < 7, groups >= 7
        cv = depth_probe(weak[tr], d[tr], weak[te], d[te], DEFAULT_RIDGES, groups=groups[tr])
        fixed = depth_probe(weak[tr], d[tr], weak[te], d[te], 1e-4)
        assert cv["absrel"] <= 1.02 * cv["absrel_constant"], cv
        worse_fixed += fixed["absrel"] > 1.1 * fixed["absrel_constant"]
    assert worse_fixed == 6


def test_ridge_cv_picks_small_lambda_for_signal_and_inf_for_noise():
    from geovr.eval.probe import choose_ridge, group_folds

    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 6))
    groups = np.repeat(np.arange(10), 30)
    lam, mse = choose_ridge(X, X @ rng.normal(size=6) + 0.01 * rng.normal(size=300), groups)
    assert lam <= 1e-2 and np.argmin(mse) == list(mse).index(min(mse))
    lam, _ = choose_ridge(X, rng.normal(size=300), groups)
    assert lam >= 100  # nothing to learn: heavy shrinkage or the constant
    folds = group_folds(groups, 5)
    assert sum(f.sum() for f in folds) == 300
    for f in folds:  # no scene is split between folds
        assert set(groups[f]).isdisjoint(groups[~f])
