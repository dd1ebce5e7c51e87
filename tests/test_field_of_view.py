"""Same field of view for student, teacher and metric teacher (portrait and square frames).

The synthetic world gives exact geometry: a frame rendered at one resolution, and the exact depth any
other camera would see. For each teacher pre-processing we (1) check that the teacher's input image
equals a render of the scene with a camera derived from that pre-processing (so we know which scene
point every teacher pixel sees), then (2) check that the teacher-resolution depth target, resampled to
the student's token-aligned frame as the objectives do, equals the depth rendered directly at the
student's resolution. A centre crop fails (2): its targets describe a different part of the scene.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geovr.data.synthetic.camera import make_trajectory
from geovr.data.synthetic.render import render
from geovr.data.synthetic.scene import generate_scene
from geovr.protocols import TeacherOutput
from geovr.train.teacher_cache import merge_metric
from geovr_plugin_dust3r.preprocess import preprocess as dust3r_preprocess
from geovr_plugin_qwen_vl.backbone import target_frame_size
from geovr_plugin_qwen_vl.config import Qwen3VLBackboneConfig
from geovr_plugin_vggt.preprocess import preprocess_frames as vggt_preprocess


def _camera(K: torch.Tensor, sy: float, sx: float, top: float = 0.0, left: float = 0.0) -> torch.Tensor:
    """Intrinsics after resizing by ``(sy, sx)`` (pixel centres at integers, half-pixel aware) and then
    cutting ``top``/``left`` rows/columns of the resized image."""
    K = K.clone()
    K[:, 0, 0] *= sx
    K[:, 1, 1] *= sy
    K[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5 - left
    K[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5 - top
    return K


@pytest.fixture(scope="module")
def world():
    scene = generate_scene(11, (6, 10), name="fov")
    return {"scene": scene}


def _view(world, H: int, W: int):
    traj = make_trajectory(world["scene"], 2, (H, W), 5, kind="pan")
    K = torch.as_tensor(traj.intrinsics, dtype=torch.float64)
    E = torch.as_tensor(traj.extrinsics, dtype=torch.float64)
    out = render(world["scene"], K, E, (H, W))
    return K, E, out["rgb"], out["depth"]


def _student_truth(world, K, E, H, W):
    """The Qwen3-VL student's resized frame size (whole frame, aspect kept under its budget) and the
    depth rendered directly at that size."""
    cfg = Qwen3VLBackboneConfig(min_pixels=32 * 32, max_pixels=96 * 128)
    hs, ws = target_frame_size(H, W, 32, cfg, num_frames=2, kind="qwen3_vl")
    depth = render(world["scene"], _camera(K, hs / H, ws / W), E, (hs, ws), rgb=False)["depth"]
    return (hs, ws), depth


def _median_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    ok = (a > 0) & (b > 0) & torch.isfinite(a) & torch.isfinite(b)
    return float(((a[ok] - b[ok]).abs() / b[ok]).median())


def _teacher_check(world, K, E, rgb_in, teacher_img, cam, student_size, student_depth):
    """(1) the teacher image is the render of camera ``cam`` → mean |Δrgb|; (2) its depth resampled to
    the student frame vs the student's truth → median relative error."""
    h, w = teacher_img.shape[-2:]
    ref = render(world["scene"], cam, E, (h, w))
    rgb_err = float((teacher_img - ref["rgb"]).abs().mean())
    resampled = F.interpolate(ref["depth"][:, None], size=student_size, mode="bilinear", align_corners=False)[:, 0]
    return rgb_err, _median_rel(resampled, student_depth), ref["depth"]


def test_portrait_vggt_and_metric_targets_match_the_student(world):
    H, W = 320, 240  # portrait
    K, E, rgb, depth = _view(world, H, W)
    s_size, s_depth = _student_truth(world, K, E, H, W)
    size = 112
    # resize mode (default): the whole frame, long side 112, short side 84 (a multiple of 28)
    img = vggt_preprocess(rgb[None], size, "resize")[0]
    assert tuple(img.shape[-2:]) == (112, 84)
    rgb_err, depth_err, t_depth = _teacher_check(world, K, E, rgb, img, _camera(K, 112 / H, 84 / W), s_size, s_depth)
    assert rgb_err < 0.03, rgb_err
    assert depth_err < 1e-3, depth_err
    # the metric teacher sees the input frame; its depth is resampled onto the teacher's grid
    merged = merge_metric(TeacherOutput(depth=t_depth[None]), TeacherOutput(metric_depth=depth[None])).metric_depth[0]
    assert _median_rel(merged, t_depth) < 1e-3
    # the reference crop mode: width → 112, height 154 centre-cropped to 112 rows (21 cut at the top)
    img = vggt_preprocess(rgb[None], size, "crop")[0]
    assert tuple(img.shape[-2:]) == (112, 112)
    rgb_err, depth_err, t_depth = _teacher_check(
        world, K, E, rgb, img, _camera(K, 154 / H, 112 / W, top=21), s_size, s_depth
    )
    assert rgb_err < 0.03, rgb_err  # the camera model of the crop is right ...
    assert depth_err > 0.05, depth_err  # ... and its targets do not line up with the student's pixels
    merged = merge_metric(TeacherOutput(depth=t_depth[None]), TeacherOutput(metric_depth=depth[None])).metric_depth[0]
    assert _median_rel(merged, t_depth) > 0.05


def test_square_dust3r_targets_match_the_student(world):
    H = W = 240  # a square frame: the reference loader crops it to 4:3
    K, E, rgb, depth = _view(world, H, W)
    s_size, s_depth = _student_truth(world, K, E, H, W)
    img = (dust3r_preprocess(rgb, 112, crop=False) + 1) / 2
    assert tuple(img.shape[-2:]) == (112, 112)
    rgb_err, depth_err, _ = _teacher_check(world, K, E, rgb, img, _camera(K, 112 / H, 112 / W), s_size, s_depth)
    assert rgb_err < 0.03 and depth_err < 1e-3, (rgb_err, depth_err)
    img = (dust3r_preprocess(rgb, 112, crop=True) + 1) / 2  # 112x112 resized, rows 16..96 kept (4:3)
    assert tuple(img.shape[-2:]) == (80, 112)
    rgb_err, depth_err, _ = _teacher_check(world, K, E, rgb, img, _camera(K, 112 / H, 112 / W, top=16), s_size, s_depth)
    assert rgb_err < 0.03 and depth_err > 0.01, (rgb_err, depth_err)


def test_portrait_dust3r_resize_keeps_the_whole_frame(world):
    H, W = 320, 240
    K, E, rgb, depth = _view(world, H, W)
    s_size, s_depth = _student_truth(world, K, E, H, W)
    img = (dust3r_preprocess(rgb, 112, crop=False) + 1) / 2  # 112 x 80 (the short side to a multiple of 16)
    assert tuple(img.shape[-2:]) == (112, 80)
    rgb_err, depth_err, _ = _teacher_check(world, K, E, rgb, img, _camera(K, 112 / H, 80 / W), s_size, s_depth)
    assert rgb_err < 0.03 and depth_err < 1e-3, (rgb_err, depth_err)
