"""The GeoVR loss functions against values computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from geovr.objectives.losses import (
    camera_pose_loss,
    conf_depth_loss,
    cosine_distill_loss,
    depth_loss,
    depth_metrics,
    focal_rescale,
    gradient_loss,
    median,
    multiscale_gradient_loss,
    quantile_filter,
    rotation_error_deg,
    scale_loss,
    scale_target,
    silog_loss,
)


def close(a, b, tol=1e-6):
    a = a.detach() if isinstance(a, torch.Tensor) else a
    assert abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b))), (float(a), float(b))


# -- camera -----------------------------------------------------------------------------------------


def _pose_pair():
    pred = torch.zeros(1, 2, 9)
    target = torch.zeros(1, 2, 9)
    target[0, 0, :3] = torch.tensor([1.0, 2.0, 300.0])  # 300 is clamped to 100
    target[0, 1, :3] = torch.tensor([0.0, 0.0, -1.0])
    target[0, :, 3:7] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    pred[0, :, 3:7] = torch.tensor([0.0, 0.0, 0.0, -1.0])  # same rotation, opposite sign
    target[0, 0, 7:] = torch.tensor([0.5, 0.5])
    target[0, 1, 7:] = torch.tensor([1.0, 1.0])
    return pred, target


def test_camera_pose_loss_hand_values_clamp_and_weights():
    pred, target = _pose_pair()
    out = camera_pose_loss(pred, target)
    close(out["loss_T"], (1 + 2 + 100 + 0 + 0 + 1) / 6)
    close(out["loss_R"], (2 + 2) / 8)
    close(out["loss_FL"], 0.75)
    close(out["loss"], 104 / 6 + 0.5 + 0.5 * 0.75)
    out = camera_pose_loss(pred, target, weights=(2.0, 0.0, 1.0), clamp=1.5)
    close(out["loss_T"], (1 + 1.5 + 1.5 + 0 + 0 + 1) / 6)
    close(out["loss"], 2 * 5 / 6 + 0.75)


def test_camera_pose_loss_sign_invariant_quaternion():
    pred, target = _pose_pair()
    assert float(camera_pose_loss(pred, target, quat_sign_invariant=True)["loss_R"]) == 0.0
    pred[0, 0, 3:7] = torch.tensor([0.0, 0.0, 0.5, -1.0])  # min(|q-q*|=2.5, |q+q*|=0.5) / 4
    close(camera_pose_loss(pred, target, quat_sign_invariant=True)["loss_R"], (0.5 / 4 + 0.0) / 2)


def test_camera_pose_loss_zero_on_identical_inputs_and_no_teacher_grad():
    x = torch.randn(2, 3, 9)
    out = camera_pose_loss(x, x.clone())
    assert all(float(v) == 0.0 for v in out.values())
    pred = torch.randn(2, 3, 9, requires_grad=True)
    target = torch.randn(2, 3, 9, requires_grad=True)
    camera_pose_loss(pred, target)["loss"].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None


def test_camera_pose_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B,S,9\]"):
        camera_pose_loss(torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))


def test_rotation_error_degrees():
    q_id = torch.tensor([0.0, 0.0, 0.0, 1.0])
    q_z90 = torch.tensor([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    close(rotation_error_deg(q_z90, q_id), 90.0, 1e-4)
    close(rotation_error_deg(-2 * q_id, q_id), 0.0)  # unnormalised and sign-flipped: same rotation


# -- depth ------------------------------------------------------------------------------------------


def test_quantile_filter_released_rule():
    few = torch.tensor([5.0, 1.0, 300.0])
    assert torch.equal(quantile_filter(few), few)  # <= min_elements values: unchanged
    err = torch.arange(2000.0) / 1000  # 0.000 .. 1.999
    kept = quantile_filter(err)  # k = ceil(0.98·1999) + 1 = 1961
    assert kept.numel() == 1961 and float(kept.max()) == pytest.approx(1.960)
    close(kept.mean(), 0.98)
    close(quantile_filter(err, 0.5).mean(), 0.5)  # k = 1001: values 0 .. 1.000
    capped = torch.cat([torch.ones(1500), torch.full((500,), 150.0)])
    close(quantile_filter(capped).mean(), 1.0)  # threshold capped at hard_max 100
    sparse = torch.cat([torch.ones(800), torch.full((1200,), 150.0)])
    close(quantile_filter(sparse).mean(), (800 + 1200 * 100) / 2000)  # < 1000 kept: all, clamped at 100
    close(quantile_filter(torch.tensor([5.0, 1.0, 2.0]), 0.5, min_elements=0).mean(), 1.5)  # k = 2


def test_depth_loss_is_per_sample():
    target = torch.full((2, 1, 4, 4), 2.0)
    pred = target + torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[0, 0, 2:] = False
    mask[0, 0, :, 2:] = False  # sample 0: 4 pixels of error 1
    out = depth_loss(pred, target, mask, grad_scales=0)
    close(out["loss_reg"], (1 + 3) / 2)  # pooled pixels would give 52/20
    close(out["loss"], 2.0)
    bad_target = target.clone()
    bad_target[1] = 0.0  # a sample without valid pixels is left out
    close(depth_loss(pred, bad_target, grad_scales=0)["loss_reg"], 1.0)


def test_depth_loss_filters_outliers_per_sample():
    target = torch.ones(2, 1, 40, 50)  # 2000 pixels per sample
    pred = target + (torch.arange(2000.0) / 1000).view(1, 1, 40, 50)
    pred[1] = target[1] + 1  # sample 1: constant error 1
    close(depth_loss(pred, target, grad_scales=0)["loss_reg"], (0.98 + 1.0) / 2)
    close(depth_loss(pred, target, grad_scales=0, min_elements=5000)["loss_reg"], (0.9995 + 1.0) / 2)


def _ramp(n, dx=1.0, dy=0.0):
    i = torch.arange(n, dtype=torch.float32)
    return (dx * i.view(1, n) + dy * i.view(n, 1)).reshape(1, n, n)


def test_gradient_loss_adds_x_and_y_means():
    diff = _ramp(8, dx=1.0, dy=2.0)  # [S=1, 8, 8]
    mask = torch.ones_like(diff, dtype=torch.bool)
    close(gradient_loss(diff, mask, 0), 1 + 2)  # mean |∂x| + mean |∂y|
    close(gradient_loss(diff, mask, 1), 2 + 4)  # stride 2: 4×4 samples
    assert gradient_loss(diff, mask, 2) is None  # 2×2 = 4 valid samples < 10: skipped
    close(multiscale_gradient_loss(diff, torch.zeros_like(diff), mask, scales=4), (3 + 6) / 2)
    mask[..., 7] = False  # column 7 invalid: pairs touching it dropped
    close(gradient_loss(_ramp(8, dx=1.0) + (torch.arange(8) == 7).float() * 50, mask, 0), 1.0)
    jump = torch.zeros(1, 4, 4)
    jump[..., 2:] = 1000.0
    ones = torch.ones_like(jump, dtype=torch.bool)
    close(gradient_loss(jump, ones, 0), 100.0 * 4 / 12)  # clamped at 100: 4 of 12 x-pairs jump
    close(gradient_loss(jump, ones, 0, clamp=7.0), 7.0 * 4 / 12)


def test_depth_loss_reg_plus_gradient_terms():
    target = torch.full((1, 1, 8, 8), 2.0)
    pred = target + _ramp(8, dx=0.1).unsqueeze(0)
    out = depth_loss(pred, target)
    close(out["loss_reg"], 0.35)
    close(out["loss_grad"], (0.1 + 0.2) / 2)
    close(out["loss"], 0.35 + 0.15)
    close(depth_loss(pred, target, grad_weight=2.0)["loss"], 0.35 + 0.3)
    close(depth_loss(pred, target, grad_scales=1)["loss_grad"], 0.1)


def test_depth_loss_gradients_and_zero_at_target():
    target = torch.rand(2, 2, 6, 6, requires_grad=True)
    out = depth_loss(target.detach() + 0, target)
    assert float(out["loss"]) == 0.0
    pred = (target.detach() + torch.rand(2, 2, 6, 6)).requires_grad_(True)
    depth_loss(pred, target)["loss"].backward()
    assert pred.grad.abs().sum() > 0 and target.grad is None


def test_invalid_target_pixels_are_ignored_without_nan_gradients():
    target = torch.full((1, 1, 4, 4), 2.0)
    target[0, 0, 0, 0], target[0, 0, 1, 1], target[0, 0, 2, 2] = float("inf"), 0.0, float("nan")
    pred = torch.full((1, 1, 4, 4), 3.0, requires_grad=True)
    for fn in (depth_loss, silog_loss):
        out = fn(pred, target)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        assert torch.isfinite(pred.grad).all() and pred.grad[0, 0, 0, 0] == 0 and pred.grad[0, 0, 1, 1] == 0
        pred.grad = None
    close(depth_loss(pred, target)["loss_reg"], 1.0)


def test_silog_loss():
    target = torch.rand(1, 2, 3, 3) + 0.5
    close(silog_loss(2 * target, target)["loss"], math.sqrt(0.15) * math.log(2), 1e-5)
    assert float(silog_loss(2 * target, target, lam=1.0)["loss"]) < 1e-5  # pure scale is invisible with λ=1
    pred = target.clone()
    pred[0, 0, 0, 0] *= math.e  # g = (1, 0 × 17): mean g² = 1/18, mean g = 1/18
    close(silog_loss(pred, target, lam=0.5)["loss"], math.sqrt(1 / 18 - 0.5 / 18**2), 1e-5)


def test_conf_depth_loss():
    target = torch.tensor([[[[1.0, 1.0]]]])
    pred = torch.tensor([[[[2.0, 3.0]]]])
    conf = torch.tensor([[[[1.0, 2.0]]]])
    out = conf_depth_loss(pred, conf, target, grad_scales=0)
    close(out["loss_conf"], (1 * 1 - 0.2 * 0 + 2 * 2 - 0.2 * math.log(2)) / 2)
    close(out["loss_reg"], 1.5)
    close(out["loss"], out["loss_conf"] + 1.5)  # the released sum: conf + reg + grad
    out = conf_depth_loss(pred, conf, target, gamma=0.5, alpha=1.0, grad_scales=0)
    close(out["loss_conf"], (0.5 * 1 * 1 + 0.5 * 2 * 2 - math.log(2)) / 2)


def test_depth_metrics():
    m = depth_metrics(torch.tensor([[[[1.0, 2.0, 1.2, 0.5]]]]), torch.tensor([[[[1.0, 1.0, 1.0, 1.0]]]]))
    close(m["abs_rel"], (0 + 1 + 0.2 + 0.5) / 4)
    close(m["delta1"], 2 / 4)


# -- metric scale -----------------------------------------------------------------------------------


def test_scale_target_median_confidence_mask():
    d = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    m = torch.tensor([2.0, 4.0, 6.0, 100.0]).reshape(1, 1, 2, 2)
    conf = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)  # interpolated median 2.5 → pixels 3, 4
    close(scale_target(d, m, conf), (3 * 6 + 4 * 100) / (9 + 16))
    close(scale_target(d, m, None), (2 + 8 + 18 + 400) / (1 + 4 + 9 + 16))
    valid = torch.tensor([True, True, True, False]).reshape(1, 1, 2, 2)  # e.g. sky: median of 1, 2, 3 = 2
    close(scale_target(d, m, conf, valid), (8 + 18) / (4 + 9))


def test_scale_target_thresholds_and_batch():
    d = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]]).reshape(2, 1, 2, 2)
    m = torch.tensor([[2.0, 0.005, 6.0, 8.0], [3.0, 3.0, 3.0, 3.0]]).reshape(2, 1, 2, 2)  # 0.005 < 0.01
    d[0, 0, 1, 1] = 1e-4  # below the teacher-depth threshold
    out = scale_target(d, m, None)
    assert out.shape == (2,)
    close(out[0], (2 + 18) / (1 + 9))
    close(out[1], 3.0)
    close(scale_target(d, m, None, min_metric=0.001)[0], (2 + 0.01 + 18) / (1 + 4 + 9), 1e-5)
    none = scale_target(d, torch.zeros_like(m), None)
    assert torch.isnan(none).all()


def test_scale_target_median_is_per_video():
    d = torch.ones(2, 1, 1, 4)
    m = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]).reshape(2, 1, 1, 4)
    conf = torch.tensor([[1.0, 2.0, 5.0, 6.0], [9.0, 8.0, 7.0, 1.0]]).reshape(2, 1, 1, 4)
    out = scale_target(d, m, conf)
    close(out[0], (3 + 4) / 2)  # median 3.5 → pixels 2, 3 (a batch-wide median, 5.5, would give 4)
    close(out[1], (1 + 2) / 2)  # median 7.5 → pixels 0, 1 (batch-wide: 2)


def test_scale_target_leaves_the_sky_out():
    d = torch.ones(1, 1, 1, 5)
    m = torch.tensor([1.0, 2.0, 3.0, 4.0, float("nan")]).reshape(1, 1, 1, 5)  # NaN: the metric teacher's sky
    conf = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.5]).reshape(1, 1, 1, 5)
    # the confidence median is taken over non-sky pixels only: 2.5 (with the sky pixel it would be 2 → 3.0)
    close(scale_target(d, m, conf), (3 + 4) / 2)
    far = torch.tensor([1.0, 2.0, 3.0, 4.0, 50.0]).reshape(1, 1, 1, 5)
    close(scale_target(d, far, None), (1 + 2 + 3 + 4 + 50) / 5)
    close(scale_target(d, far, None, sky_max_depth=20.0), (1 + 2 + 3 + 4) / 4)  # 50 m ≥ 20 m: sky


def test_focal_rescale_and_median():
    depth = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    K = torch.eye(3).repeat(1, 2, 1, 1)
    K[0, 0, 0, 0], K[0, 0, 1, 1] = 600.0, 400.0  # frame 0: f = 500
    K[0, 1, 0, 0], K[0, 1, 1, 1] = 150.0, 150.0  # frame 1: f = 150
    out = focal_rescale(depth, K)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([500 / 300, 2 * 150 / 300]))
    torch.testing.assert_close(
        focal_rescale(depth, K, reference=100.0, pixel_ratio=2.0)[0, :, 1, 1], torch.tensor([10.0, 6.0])
    )
    close(median(torch.tensor([4.0, 1.0, 3.0, 2.0])), 2.5)
    close(median(torch.tensor([4.0, 1.0, 3.0])), 3.0)


def test_scale_loss_log1p_form():
    pred = torch.tensor([1.0, math.e - 1])
    target = torch.tensor([3.0, math.e - 1])
    close(scale_loss(pred, target), math.log(2) / 2)
    p = torch.tensor([2.0], requires_grad=True)
    t = torch.tensor([5.0], requires_grad=True)
    scale_loss(p, t).backward()
    close(p.grad[0], -1 / 3)  # d/dp |log1p(p) − log1p(t)| = −1/(1+p) for p < t
    assert t.grad is None


# -- distillation -----------------------------------------------------------------------------------


def test_cosine_distill_loss():
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 3.0]]).reshape(1, 1, 2, 2, 2).requires_grad_(True)
    t = torch.tensor([[0.0, 1.0], [2.0, 2.0], [-1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 2, 2, 2).requires_grad_(True)
    loss = cosine_distill_loss(s, t)
    close(loss, (1 + 0 + 2 + 0) / 4)
    loss.backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError, match="shape"):
        cosine_distill_loss(torch.zeros(1, 1, 2, 2, 3), torch.zeros(1, 1, 2, 2, 4))
