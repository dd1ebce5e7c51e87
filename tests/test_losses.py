"""The GeoVR loss functions against values computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from geovr.objectives.losses import (
    camera_pose_loss, conf_depth_loss, cosine_distill_loss, depth_loss, depth_metrics, gradient_loss,
    multiscale_gradient_loss, rotation_error_deg, scale_loss, scale_target, silog_loss, trimmed_l1,
)


def close(a, b, tol=1e-6):
    a = a.detach() if isinstance(a, torch.Tensor) else a
    assert abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b))), (float(a), float(b))


# -- camera -----------------------------------------------------------------------------------------

def _pose_pair():
    pred = torch.zeros(1, 2, 9)
    target = torch.zeros(1, 2, 9)
    target[0, 0, :3] = torch.tensor([1.0, 2.0, 300.0])   # 300 is clamped to 100
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

def test_trimmed_l1_drops_the_top_share():
    err = torch.arange(100.0).flip(0) / 100  # 0.99 .. 0.00
    close(trimmed_l1(err, 0.98), sum(range(98)) / 100 / 98)    # 0.99, 0.98 dropped → 0.485
    close(trimmed_l1(err, 0.5), sum(range(50)) / 100 / 50)
    close(trimmed_l1(err, 1.0), err.mean())
    close(trimmed_l1(torch.tensor([5.0, 1.0]), 0.98), 3.0)      # ceil(1.96)=2: keep both
    close(trimmed_l1(torch.tensor([5.0, 1.0, 2.0]), 0.3), 1.0)  # ceil(0.9)=1: the smallest only


def test_depth_loss_quantile_drop():
    target = torch.full((1, 1, 10, 10), 2.0)
    pred = target + (torch.arange(100.0) / 100).reshape(1, 1, 10, 10)
    out = depth_loss(pred, target, grad_scales=0)
    close(out["loss_l1"], 0.485)
    close(out["loss"], 0.485)
    close(depth_loss(pred, target, grad_scales=0, drop_quantile=0.5)["loss_l1"], 0.245)


def test_depth_loss_clamp_and_mask():
    target = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]])
    pred = torch.tensor([[[[2.0, 3.0], [4.0, 501.0]]]])
    out = depth_loss(pred, target, drop_quantile=1.0, grad_scales=0)
    close(out["loss_l1"], (1 + 2 + 3 + 100) / 4)
    close(depth_loss(pred, target, drop_quantile=1.0, grad_scales=0, clamp=2.5)["loss_l1"], (1 + 2 + 2.5 + 2.5) / 4)
    mask = torch.tensor([[[[True, True], [False, False]]]])
    close(depth_loss(pred, target, mask, drop_quantile=1.0, grad_scales=0)["loss_l1"], 1.5)
    bad_target = target.clone()
    bad_target[0, 0, 1, :] = 0.0  # non-positive target pixels are invalid
    close(depth_loss(pred, bad_target, drop_quantile=1.0, grad_scales=0)["loss_l1"], 1.5)


def _column_ramp(n=4, step=1.0):
    return (torch.arange(n, dtype=torch.float32) * step).expand(n, n).reshape(1, 1, n, n).clone()


def test_gradient_loss_each_scale():
    diff = _column_ramp()  # diff[i, j] = j
    mask = torch.ones_like(diff, dtype=torch.bool)
    close(gradient_loss(diff, mask, 0), 12 / 24)       # 12 x-pairs of |1|, 12 y-pairs of 0
    close(gradient_loss(diff, mask, 1), (2 * 2) / 4)   # stride 2: columns 0,2 → 2 x-pairs of |2|, 2 y-pairs
    assert gradient_loss(diff, mask, 2) is None        # a 1×1 map has no pair
    close(multiscale_gradient_loss(diff, torch.zeros_like(diff), mask, scales=4), (0.5 + 1.0) / 2)
    mask[..., 3] = False                               # column 3 invalid: 4·2 x-pairs, 3·3 y-pairs
    close(gradient_loss(diff, mask, 0), 8 / 17)
    jump = torch.zeros(1, 1, 1, 2)
    jump[..., 1] = 1000.0
    close(gradient_loss(jump, torch.ones_like(jump, dtype=torch.bool), 0), 100.0)  # clamped
    close(gradient_loss(jump, torch.ones_like(jump, dtype=torch.bool), 0, clamp=7.0), 7.0)


def test_depth_loss_l1_plus_gradient_terms():
    target = torch.full((1, 1, 4, 4), 2.0)
    pred = target + _column_ramp(step=0.1)
    out = depth_loss(pred, target, drop_quantile=1.0)
    close(out["loss_l1"], 0.15)
    close(out["loss_grad"], (0.05 + 0.1) / 2)
    close(out["loss"], 0.15 + 0.075)
    close(depth_loss(pred, target, drop_quantile=1.0, grad_weight=2.0)["loss"], 0.15 + 0.15)
    close(depth_loss(pred, target, drop_quantile=1.0, grad_scales=1)["loss_grad"], 0.05)


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
    close(depth_loss(pred, target, drop_quantile=1.0)["loss_l1"], 1.0)


def test_silog_loss():
    target = torch.rand(1, 2, 3, 3) + 0.5
    close(silog_loss(2 * target, target)["loss"], math.sqrt(0.15) * math.log(2), 1e-5)
    assert float(silog_loss(2 * target, target, lam=1.0)["loss"]) < 1e-5   # pure scale is invisible with λ=1
    pred = target.clone()
    pred[0, 0, 0, 0] *= math.e  # g = (1, 0 × 17): mean g² = 1/18, mean g = 1/18
    close(silog_loss(pred, target, lam=0.5)["loss"], math.sqrt(1 / 18 - 0.5 / 18**2), 1e-5)


def test_conf_depth_loss():
    target = torch.tensor([[[[1.0, 1.0]]]])
    pred = torch.tensor([[[[2.0, 3.0]]]])
    conf = torch.tensor([[[[1.0, 2.0]]]])
    out = conf_depth_loss(pred, conf, target, grad_scales=0)
    close(out["loss_conf"], (1 * 1 - 0.2 * 0 + 2 * 2 - 0.2 * math.log(2)) / 2)
    out = conf_depth_loss(pred, conf, target, gamma=0.5, alpha=1.0, grad_scales=0, clamp=1.5)
    close(out["loss"], (0.5 * 1 * 1 + 0.5 * 1.5 * 2 - math.log(2)) / 2)
    out = conf_depth_loss(pred, conf, target)   # gradient term: one x-pair |1|
    close(out["loss_grad"], 1.0)


def test_depth_metrics():
    m = depth_metrics(torch.tensor([[[[1.0, 2.0, 1.2, 0.5]]]]), torch.tensor([[[[1.0, 1.0, 1.0, 1.0]]]]))
    close(m["abs_rel"], (0 + 1 + 0.2 + 0.5) / 4)
    close(m["delta1"], 2 / 4)


# -- metric scale -----------------------------------------------------------------------------------

def test_scale_target_median_confidence_mask():
    d = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    m = torch.tensor([2.0, 4.0, 6.0, 100.0]).reshape(1, 1, 2, 2)
    conf = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)   # lower median 2 → pixels 2,3,4
    close(scale_target(d, m, conf), (2 * 4 + 3 * 6 + 4 * 100) / (4 + 9 + 16))
    close(scale_target(d, m, None), (2 + 8 + 18 + 400) / (1 + 4 + 9 + 16))
    valid = torch.tensor([True, True, True, False]).reshape(1, 1, 2, 2)   # e.g. sky
    close(scale_target(d, m, conf, valid), (8 + 18) / (4 + 9))


def test_scale_target_thresholds_and_batch():
    d = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]]).reshape(2, 1, 2, 2)
    m = torch.tensor([[2.0, 0.005, 6.0, 8.0], [3.0, 3.0, 3.0, 3.0]]).reshape(2, 1, 2, 2)  # 0.005 < 0.01
    d[0, 0, 1, 1] = 1e-4   # below the teacher-depth threshold
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
    close(out[0], (2 + 3 + 4) / 3)   # lower median 2 → pixels 1..3 (a batch-wide median, 5, would give 3.5)
    close(out[1], (1 + 2 + 3) / 3)   # lower median 7 → pixels 0..2


def test_scale_loss_log1p_form():
    pred = torch.tensor([1.0, math.e - 1])
    target = torch.tensor([3.0, math.e - 1])
    close(scale_loss(pred, target), math.log(2) / 2)
    p = torch.tensor([2.0], requires_grad=True)
    t = torch.tensor([5.0], requires_grad=True)
    scale_loss(p, t).backward()
    close(p.grad[0], -1 / 3)   # d/dp |log1p(p) − log1p(t)| = −1/(1+p) for p < t
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
