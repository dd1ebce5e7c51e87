"""The released method's dense depth head (``DenseHead``) and depth loss against golden outputs of the
released training code (``tests/golden/geovr_heads/``, see its README for the construction)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from geovr.objectives import losses as L
from geovr.objectives.configs import DepthConfig
from geovr.objectives.heads import DenseHead
from geovr.objectives.objectives import build_depth
from geovr.protocols import StudentOutput, TeacherOutput

GOLDEN = Path(__file__).parent / "golden" / "geovr_heads"


def golden(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    path = GOLDEN / f"{name}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return meta, load_file(str(path))


def dense_case(case: str):
    meta, t = golden(f"dense_case_{case}")
    cfg = json.loads(meta["config"])
    head = DenseHead(cfg["dim_in"], cfg["patch_size"], cfg["target_patch_size"], cfg["features"], cfg["out_channels"])
    head.load_released(t, prefix="head.")  # the released module's own parameter names
    hidden = [t[f"hidden.{k}"] for k in cfg["intermediate_layer_idx"]]
    return cfg, head.eval(), hidden, t["depth"]


@pytest.mark.parametrize("case", ["a", "b"])
def test_dense_head_matches_the_released_head(case):
    cfg, head, hidden, expected = dense_case(case)
    with torch.no_grad():
        out = head(hidden, image_size=(cfg["H"], cfg["W"]), target_size=(cfg["target_H"], cfg["target_W"]))
    assert out.shape == (cfg["B"], cfg["T"], cfg["target_H"], cfg["target_W"])
    assert float(expected.std()) > 0.01  # not a comparison between constants
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_dense_head_parameter_names_and_count_at_the_released_size():
    with torch.device("meta"):
        head = DenseHead(2048)
    assert sum(p.numel() for p in head.parameters()) == 32_335_153
    names = set(head.state_dict())
    _, t = golden("dense_case_a")
    assert names == {k[len("head.") :] for k in t if k.startswith("head.")}  # the released key set


def test_load_released_names_the_mismatch():
    _, t = golden("dense_case_a")
    head = DenseHead(64, features=32, out_channels=(16, 32, 64, 32))  # level 4 narrower than the released
    with pytest.raises(ValueError, match=r"shapes \['projects.3.bias"):
        head.load_released(t, prefix="head.")
    with pytest.raises(ValueError, match="missing"):
        DenseHead(64, features=32, out_channels=(16, 32, 64, 64)).load_released(t)  # no dpt_head.* keys


def test_dense_head_input_errors():
    head = DenseHead(8, features=8, out_channels=(4, 4, 8, 8))
    hidden = [torch.randn(1, 2, 6, 8)] * 4
    with pytest.raises(ValueError, match="2x2 grid"):
        head(hidden, image_size=(64, 64), target_size=(56, 56))
    with pytest.raises(ValueError, match="multiples of target_patch_size"):
        head(hidden, image_size=(64, 96), target_size=(50, 84))
    with pytest.raises(ValueError, match="multiples of 4"):
        DenseHead(8, target_patch_size=14)


def test_depth_objective_feeds_the_dense_head_like_the_released_model():
    """Grids ``[B,S,h,w,D]`` from the backbone → tokens ``[B,S,h·w,D]``, ``image_size = (h, w)·patch_size``,
    ``target_size`` = the teacher depth's size: the objective reproduces case b (student grid 3×4, target
    grid 2×3 → the resize path)."""
    cfg, head, hidden, expected = dense_case("b")
    ctx = types.SimpleNamespace(
        backbone=types.SimpleNamespace(hidden_size=cfg["dim_in"], num_layers=6), teacher=None, device="cpu"
    )
    config = DepthConfig(
        channels=cfg["out_channels"], features=cfg["features"], student_layers=cfg["intermediate_layer_idx"]
    )
    obj = build_depth(config, ctx)
    obj.head.load_state_dict(head.state_dict())
    h, w = cfg["H"] // cfg["patch_size"], cfg["W"] // cfg["patch_size"]
    grids = {
        k: x.reshape(cfg["B"], cfg["T"], h, w, cfg["dim_in"])
        for k, x in zip(cfg["intermediate_layer_idx"], hidden, strict=False)
    }
    with torch.no_grad():
        pred, conf = obj.predict(StudentOutput(hidden=grids), (cfg["target_H"], cfg["target_W"]))
    assert conf is None
    torch.testing.assert_close(pred, expected, rtol=0, atol=1e-5)
    # the objective's loss is the released depth loss on that prediction
    target = expected.flip(-1) + 0.5
    out = obj(StudentOutput(hidden=grids), TeacherOutput(depth=target))
    torch.testing.assert_close(out.loss, L.depth_loss(pred, target)["loss"])


def test_depth_loss_matches_the_released_loss():
    meta, t = golden("depthloss_case_a")
    out = L.depth_loss(t["pred"], t["target"])
    torch.testing.assert_close(out["loss_reg"], torch.tensor(float(meta["loss_reg"])), rtol=1e-4, atol=0)
    torch.testing.assert_close(out["loss_grad"], torch.tensor(float(meta["loss_grad"])), rtol=1e-4, atol=0)
    torch.testing.assert_close(out["loss"], out["loss_reg"] + out["loss_grad"])
