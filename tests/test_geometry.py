"""geovr.geometry against the VGGT golden data (tiny_aux / tiny_io) and basic identities."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from geovr import geometry as G  # noqa: E402
from geovr.testing.golden import golden_dir  # noqa: E402

ATOL = 1e-5
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def aux():
    return safetensors_torch.load_file(str(golden_dir("vggt", HERE / "golden" / "vggt") / "tiny_aux.safetensors"))


@pytest.fixture(scope="module")
def io():
    return safetensors_torch.load_file(str(golden_dir("vggt", HERE / "golden" / "vggt") / "tiny_io.safetensors"))


def test_quat_to_mat_matches_golden_for_unnormalised_quaternions(aux):
    got = G.quat_to_mat(aux["pose_utils.quat_xyzw_unnormalised"])
    assert got.shape == (2, 4, 3, 3)
    torch.testing.assert_close(got, aux["pose_utils.quat_to_mat"], atol=ATOL, rtol=ATOL)


def test_mat_to_quat_matches_golden_unit_w_nonnegative(aux):
    got = G.mat_to_quat(aux["pose_utils.quat_to_mat"])
    torch.testing.assert_close(got, aux["pose_utils.mat_to_quat_of_that"], atol=ATOL, rtol=ATOL)
    assert bool((got[..., 3] >= 0).all())
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(2, 4), atol=1e-6, rtol=0)


def test_pose_encoding_decode_and_roundtrip_match_golden(aux):
    ext, intr = G.pose_encoding_to_extri_intri(aux["pose_utils.pose_enc"], (42, 56))
    torch.testing.assert_close(ext, aux["pose_utils.extrinsic_hw42x56"], atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(intr, aux["pose_utils.intrinsic_hw42x56"], atol=1e-4, rtol=ATOL)
    enc = G.extri_intri_to_pose_encoding(ext, intr, (42, 56))
    assert enc.shape == (2, 4, 9)
    torch.testing.assert_close(enc, aux["pose_utils.pose_enc_roundtrip_hw42x56"], atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("case", "abcd")
def test_camera_matrices_of_model_outputs_match_golden(io, case):
    pe = io[f"case_{case}.pose_enc"]
    H, W = io[f"case_{case}.images"].shape[-2:]
    ext, intr = G.pose_encoding_to_extri_intri(pe, (H, W))
    torch.testing.assert_close(ext, io[f"case_{case}.extrinsic"], atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(intr, io[f"case_{case}.intrinsic"], atol=1e-4, rtol=ATOL)


def test_unproject_depth_matches_golden(io):
    depth = io["case_a.depth"][0]  # [S,H,W,1]: the trailing channel is accepted
    pts = G.unproject_depth(depth, io["case_a.extrinsic"][0], io["case_a.intrinsic"][0])
    assert pts.shape == (3, 42, 56, 3)
    torch.testing.assert_close(pts, io["case_a.points_from_depth_b0"], atol=ATOL, rtol=ATOL)
    batched = G.unproject_depth(io["case_a.depth"][..., 0], io["case_a.extrinsic"], io["case_a.intrinsic"])
    torch.testing.assert_close(batched[0], pts, atol=0, rtol=0)


@pytest.mark.parametrize("case", "ab")
@pytest.mark.parametrize("given_points", [True, False])
def test_normalize_scene_matches_trainer_gt_normalisation(aux, case, given_points):
    raw = {
        k: aux[f"case_{case}.gt_raw.{k}"] for k in ("extrinsics", "depths", "intrinsics", "point_masks", "world_points")
    }
    out = G.normalize_scene(
        raw["extrinsics"],
        raw["depths"],
        raw["intrinsics"],
        raw["point_masks"],
        raw["world_points"] if given_points else None,
    )
    torch.testing.assert_close(out.extrinsics, aux[f"case_{case}.gt_norm.extrinsics"], atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.depth, aux[f"case_{case}.gt_norm.depths"], atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.world_points, aux[f"case_{case}.gt_norm.world_points"], atol=ATOL, rtol=ATOL)
    B = raw["depths"].shape[0]
    assert out.scale.shape == (B,)
    # first camera is the identity; camera points are (x_c, y_c, d) / s
    eye = torch.eye(3, 4).expand(B, 3, 4)
    torch.testing.assert_close(out.extrinsics[:, 0], eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.camera_points[..., 2], out.depth, atol=0, rtol=0)
    enc = G.extri_intri_to_pose_encoding(out.extrinsics, raw["intrinsics"], raw["depths"].shape[-2:])
    torch.testing.assert_close(enc, aux[f"case_{case}.gt_pose_enc"], atol=ATOL, rtol=ATOL)


def test_mean_distance_is_one_after_normalisation(aux):
    raw = {k: aux[f"case_a.gt_raw.{k}"] for k in ("extrinsics", "depths", "intrinsics", "point_masks")}
    out = G.normalize_scene(raw["extrinsics"], raw["depths"], raw["intrinsics"], raw["point_masks"])
    m = raw["point_masks"]
    mean = out.world_points.norm(dim=-1)[m].mean()
    assert abs(float(mean) - 1.0) < 1e-3


def test_closed_form_inverse_se3_is_the_inverse():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(5, 4, generator=g)
    T = torch.cat([G.quat_to_mat(q), torch.randn(5, 3, 1, generator=g)], dim=-1)
    inv = G.closed_form_inverse_se3(T)
    assert inv.shape == (5, 4, 4)
    full = torch.cat([T, torch.tensor([0.0, 0, 0, 1]).expand(5, 1, 4)], dim=-2)
    torch.testing.assert_close(inv @ full, torch.eye(4).expand(5, 4, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(G.closed_form_inverse_se3(full), inv, atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"\[\.\.\.,3,4\]"):
        G.closed_form_inverse_se3(torch.zeros(3, 3))


def test_quaternion_roundtrip_and_sign_convention():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(64, 4, generator=g, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, 3:] < 0, -q, q)
    torch.testing.assert_close(G.mat_to_quat(G.quat_to_mat(q)), q, atol=1e-10, rtol=0)
    # a rotation of pi/2 about z: xyzw = (0, 0, sin(pi/4), cos(pi/4))
    rz = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    torch.testing.assert_close(
        G.mat_to_quat(rz), torch.tensor([0, 0, math.sqrt(0.5), math.sqrt(0.5)]), atol=1e-6, rtol=0
    )


def test_pose_encoding_fov_convention_h_first():
    ext = torch.eye(3, 4).expand(1, 1, 3, 4)
    intr = torch.tensor([[100.0, 0, 28], [0, 50, 21], [0, 0, 1]]).expand(1, 1, 3, 3)
    enc = G.extri_intri_to_pose_encoding(ext, intr, (42, 56))
    assert enc[0, 0, 7].item() == pytest.approx(2 * math.atan(21 / 50))
    assert enc[0, 0, 8].item() == pytest.approx(2 * math.atan(28 / 100))
    torch.testing.assert_close(enc[0, 0, 3:7], torch.tensor([0.0, 0, 0, 1]))
