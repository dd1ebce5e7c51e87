"""Parity of the DUSt3R re-implementation with the golden reference data (tiny weights, cases a–c),
the reference loss values, and the official configuration's state-dict layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from geovr.testing.golden import golden_dir
from geovr_plugin_dust3r.arch import OFFICIAL, TINY, DUSt3RArch
from geovr_plugin_dust3r.loss import conf_loss, regr3d_loss
from geovr_plugin_dust3r.model import AsymmetricCroCo3DStereo

CASES = ("a", "b", "c")
CONF_KEY = "ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)"
REGR_KEY = "Regr3D(L21, norm_mode='avg_dis')"


@pytest.fixture(scope="module")
def golden():
    return golden_dir("dust3r", Path(__file__).resolve().parent / "golden")


@pytest.fixture(scope="module")
def tiny_config(golden):
    return json.loads((golden / "tiny_config.json").read_text())


@pytest.fixture(scope="module")
def io(golden):
    return load_file(str(golden / "tiny_io.safetensors"))


@pytest.fixture(scope="module")
def tiny_model(golden, tiny_config):
    torch.manual_seed(0)
    model = AsymmetricCroCo3DStereo.from_config(tiny_config).eval()
    result = model.load_state_dict(load_file(str(golden / "tiny_weights.safetensors")), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model


def _views(io, case):
    p = f"case_{case}."
    B = io[p + "view1.img"].shape[0]
    v1 = {"img": io[p + "view1.img"], "true_shape": io[p + "view1.true_shape"], "instance": [str(i) for i in range(B)]}
    v2 = {
        "img": io[p + "view2.img"],
        "true_shape": io[p + "view2.true_shape"],
        "instance": [str(B + i) for i in range(B)],
    }
    return v1, v2


def test_tiny_config_parses_to_the_tiny_arch(tiny_config):
    arch = DUSt3RArch.from_dict(tiny_config)
    assert arch == TINY
    assert arch.depth_mode == ("exp", -math.inf, math.inf) and arch.conf_mode == ("exp", 1.0, math.inf)
    assert DUSt3RArch.from_dict(tiny_config["official_for_comparison"]) == OFFICIAL
    with pytest.raises(ValueError, match="unknown DUSt3R config keys"):
        DUSt3RArch.from_dict({**tiny_config, "enc_dept": 3})
    with pytest.raises(ValueError, match="dim_tokens"):
        DUSt3RArch.from_dict({**tiny_config, "enc_embed_dim": 96, "enc_num_heads": 6})


def test_tiny_model_size_and_names(tiny_model, tiny_config, golden):
    unique = sum(p.numel() for p in tiny_model.parameters())
    assert unique == tiny_config["param_count_unique"] == 365_688
    sd = tiny_model.state_dict()
    assert len(sd) == tiny_config["state_dict_entries"] == 361
    stored = load_file(str(golden / "tiny_weights.safetensors"))
    assert sorted(sd) == sorted(stored)


@pytest.mark.parametrize("case", CASES)
def test_tiny_parity(tiny_model, io, case):
    p = f"case_{case}."
    v1, v2 = _views(io, case)
    with torch.no_grad():
        dec = tiny_model.encode_decode(v1["img"], v2["img"])
        pred1, pred2 = tiny_model(v1, v2)
    assert torch.equal(dec.pos1, io[p + "pos1"]) and torch.equal(dec.pos2, io[p + "pos2"])
    assert len(dec.tokens1) == len(dec.tokens2) == 5
    for i in range(5):
        torch.testing.assert_close(dec.tokens1[i], io[p + f"dec1.{i}"], atol=1e-5, rtol=0)
        torch.testing.assert_close(dec.tokens2[i], io[p + f"dec2.{i}"], atol=1e-5, rtol=0)
    assert set(pred1) == {"pts3d", "conf"} and set(pred2) == {"pts3d_in_other_view", "conf"}
    torch.testing.assert_close(pred1["pts3d"], io[p + "pred1.pts3d"], atol=5e-5, rtol=1e-5)
    torch.testing.assert_close(pred1["conf"], io[p + "pred1.conf"], atol=5e-5, rtol=1e-5)
    torch.testing.assert_close(pred2["pts3d_in_other_view"], io[p + "pred2.pts3d_in_other_view"], atol=5e-5, rtol=1e-5)
    torch.testing.assert_close(pred2["conf"], io[p + "pred2.conf"], atol=5e-5, rtol=1e-5)
    assert bool((pred1["conf"] > 1).all()) and bool((pred2["conf"] > 1).all())


def test_view2_decoder_and_norm_y_matter(tiny_model, io):
    """Sanity of the comparison itself: a plausible wiring mistake is far outside the tolerance."""
    v1, v2 = _views(io, "a")
    model = AsymmetricCroCo3DStereo(TINY).eval()
    model.load_state_dict(tiny_model.state_dict())
    model.dec_blocks2 = model.dec_blocks  # the view-2 decoder replaced by the view-1 decoder
    with torch.no_grad():
        _, pred2 = model(v1, v2)
    assert (pred2["pts3d_in_other_view"] - io["case_a.pred2.pts3d_in_other_view"]).abs().max() > 0.1


def test_bad_inputs_raise(tiny_model):
    img = torch.zeros(1, 3, 32, 40)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        tiny_model({"img": img}, {"img": img})
    good = torch.zeros(1, 3, 32, 48)
    with pytest.raises(ValueError, match="true_shape"):
        tiny_model({"img": good, "true_shape": torch.tensor([[48, 32]])}, {"img": good})


@pytest.mark.parametrize("case", CASES)
def test_reference_losses(io, golden, case):
    ref = json.loads((golden / "tiny_loss_values.json").read_text())[f"case_{case}"]
    p = f"case_{case}."
    pred1 = {"pts3d": io[p + "pred1.pts3d"], "conf": io[p + "pred1.conf"]}
    pred2 = {"pts3d_in_other_view": io[p + "pred2.pts3d_in_other_view"], "conf": io[p + "pred2.conf"]}
    gt1, gt2 = ({k: io[p + f"{g}.{k}"] for k in ("camera_pose", "pts3d", "valid_mask")} for g in ("gt1", "gt2"))
    loss, details = conf_loss(pred1, pred2, gt1, gt2, alpha=0.2)
    assert float(loss) == pytest.approx(ref[CONF_KEY]["loss"], rel=1e-5)
    for key, value in details.items():
        assert value == pytest.approx(ref[CONF_KEY][key], rel=1e-5), key
    loss, details = regr3d_loss(pred1, pred2, gt1, gt2)
    assert float(loss) == pytest.approx(ref[REGR_KEY]["loss"], rel=1e-5)
    for key, value in details.items():
        assert value == pytest.approx(ref[REGR_KEY][key], rel=1e-5), key


def test_official_config_on_meta_matches_reference_state_dict(golden, tiny_config):
    expected = json.loads((golden / "dust3r_vitl_512_dpt_state_dict_shapes.json").read_text())
    with torch.device("meta"):
        default = AsymmetricCroCo3DStereo.from_config()
        official = AsymmetricCroCo3DStereo.from_config(tiny_config["official_for_comparison"])
    for model in (default, official):
        sd = model.state_dict()
        assert list(sd) == list(expected)  # same names, same order
        assert {k: list(v.shape) for k, v in sd.items()} == expected
        assert len(sd) == 1009
        assert sum(p.numel() for p in model.parameters()) == 571_171_208
        # the 8 aliases are the same modules as their twins
        for head in (model.downstream_head1, model.downstream_head2):
            for i in range(4):
                assert head.dpt.scratch.layer_rn[i] is getattr(head.dpt.scratch, f"layer{i + 1}_rn")
