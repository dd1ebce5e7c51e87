"""Token layout of LLaVA-OneVision videos: positions of visual, camera and scale tokens (pure tensors)."""

from __future__ import annotations

import pytest
import torch

from geovr.errors import DataError
from geovr_plugin_llava.tokens import CAMERA_ID, SCALE_ID, build_layout, gather_grid, splice

V, PAD = 9, 0


def _ids(prefixes, S, hw, suffix=(5, 6)):
    """Rows ``pad… prefix <video>*(S*hw+1) suffix``, left-padded to a common length."""
    rows = [list(p) + [V] * (S * hw + 1) + list(suffix) for p in prefixes]
    T = max(map(len, rows))
    return torch.tensor([[PAD] * (T - len(r)) + r for r in rows])


@pytest.mark.parametrize("camera,scale", [(True, True), (True, False), (False, True), (False, False)])
def test_layout_positions_by_hand(camera, scale):
    S, grid = 3, (2, 2)
    ids = _ids([(1, 2), (1, 2, 3, 4)], S, 4)  # different video starts per row (left padding)
    lay = build_layout(ids, V, S, grid, camera=camera, scale=scale)
    K = S * camera + scale
    assert lay.input_ids.shape == (2, ids.shape[1] + K)
    for b in range(2):
        start = int((ids[b] == V).nonzero()[0])
        step = 4 + int(camera)
        expect_visual = torch.tensor([[start + s * step + j for j in range(4)] for s in range(S)])
        assert torch.equal(lay.visual[b], expect_visual)
        assert bool((lay.input_ids[b, lay.visual[b].flatten()] == V).all())
        if camera:
            assert lay.camera[b].tolist() == [start + s * step + 4 for s in range(S)]
            assert bool((lay.input_ids[b, lay.camera[b]] == CAMERA_ID).all())
        if scale:
            newline = start + S * step
            assert lay.input_ids[b, newline] == V and int(lay.scale[b]) == newline + 1
            assert lay.input_ids[b, newline + 1] == SCALE_ID
        # removing the inserted ids gives back the original row
        kept = lay.input_ids[b][lay.source[b] >= 0]
        assert torch.equal(kept, ids[b])
    assert int((lay.input_ids == CAMERA_ID).sum()) == 2 * S * camera
    assert int((lay.input_ids == SCALE_ID).sum()) == 2 * scale


def test_splice_and_gather_move_values_and_gradients():
    S, grid = 2, (1, 3)
    ids = _ids([(1,), (1, 2)], S, 3)
    lay = build_layout(ids, V, S, grid, camera=True, scale=True)
    values = torch.randn(2, ids.shape[1], 4, requires_grad=True)
    cam = torch.randn(2, S, 4, requires_grad=True)
    scale = torch.randn(2, 4, requires_grad=True)
    out = splice(values, lay, 0.0, camera=cam, scale=scale)
    for b in range(2):
        assert torch.equal(out[b, lay.camera[b]], cam[b])
        assert torch.equal(out[b, lay.scale[b]], scale[b])
        assert torch.equal(out[b][lay.source[b] >= 0], values[b])
    grid_vals = gather_grid(out, lay, grid)  # [B,S,h,w,D]
    plain = build_layout(ids, V, S, grid, camera=False, scale=False)
    assert torch.equal(grid_vals, gather_grid(values, plain, grid))
    (out.sum() + grid_vals.sum()).backward()
    assert cam.grad is not None and scale.grad is not None and float(values.grad.abs().sum()) > 0
    mask = splice(torch.ones(2, ids.shape[1], dtype=torch.long), lay, 1)
    assert mask.dtype == torch.long and bool((mask == 1).all())


def test_wrong_video_token_count_is_a_data_error():
    ids = _ids([(1, 2)], 2, 4)
    with pytest.raises(DataError, match="expected one run of 7 <video> tokens"):
        build_layout(ids, V, 2, (1, 3), camera=True, scale=False)
    broken = ids.clone()
    broken[0, 4] = 3  # split the run in two
    with pytest.raises(DataError, match="sample 0"):
        build_layout(broken, V, 2, (2, 2), camera=True, scale=False)
