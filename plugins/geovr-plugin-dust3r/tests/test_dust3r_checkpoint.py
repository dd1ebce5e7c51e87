"""Checkpoint loading: file formats, Hugging Face cache resolution, alias/dec_blocks2 filling, and
clear errors (tiny weights written to tmp_path)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from geovr.errors import CheckpointError
from geovr.testing.golden import golden_dir
from geovr_plugin_dust3r.arch import TINY
from geovr_plugin_dust3r.checkpoint import load_weights, resolve_checkpoint
from geovr_plugin_dust3r.model import AsymmetricCroCo3DStereo


@pytest.fixture(scope="module")
def tiny_sd():
    return load_file(str(golden_dir("dust3r", Path(__file__).resolve().parent / "golden") / "tiny_weights.safetensors"))


def _fresh():
    torch.manual_seed(1)
    return AsymmetricCroCo3DStereo(TINY).eval()


def _assert_loaded(model, sd):
    own = model.state_dict()
    for k, v in sd.items():
        assert torch.equal(own[k], v), k


def test_official_pth_layout_with_args(tmp_path, tiny_sd):
    path = tmp_path / "DUSt3R_tiny.pth"
    torch.save({"model": tiny_sd, "args": argparse.Namespace(model="AsymmetricCroCo3DStereo(...)")}, path)
    model = _fresh()
    assert load_weights(model, path) == str(path)
    _assert_loaded(model, tiny_sd)


def test_safetensors_with_one_alias_and_no_dec_blocks2(tmp_path, tiny_sd):
    sd = {k: v.clone() for k, v in tiny_sd.items() if not k.startswith("dec_blocks2.")}
    for h in (1, 2):  # keep layer_rn.* for head 1, layerN_rn for head 2
        for i in range(4):
            drop = (
                f"downstream_head{h}.dpt.scratch.layer{i + 1}_rn.weight"
                if h == 1
                else f"downstream_head{h}.dpt.scratch.layer_rn.{i}.weight"
            )
            del sd[drop]
    del sd["mask_token"]
    save_file(sd, str(tmp_path / "model.safetensors"))
    model = _fresh()
    load_weights(model, tmp_path)  # a directory holding model.safetensors
    own = model.state_dict()
    for k, v in tiny_sd.items():
        if k.startswith("dec_blocks2."):
            assert torch.equal(own[k], tiny_sd["dec_blocks." + k[len("dec_blocks2.") :]]), k
        elif k != "mask_token":
            assert torch.equal(own[k], v), k
    assert not torch.equal(own["dec_blocks2.0.attn.qkv.weight"], tiny_sd["dec_blocks2.0.attn.qkv.weight"])


def test_meta_model_with_assign(tmp_path, tiny_sd):
    save_file(tiny_sd, str(tmp_path / "w.safetensors"))
    with torch.device("meta"):
        model = AsymmetricCroCo3DStereo(TINY)
    load_weights(model, tmp_path / "w.safetensors", assign=True)
    assert not any(p.is_meta for p in model.parameters())
    _assert_loaded(model, tiny_sd)


def test_hf_id_from_local_cache_only(tmp_path, tiny_sd):
    repo = tmp_path / "hub" / "models--naver--DUSt3R_tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    save_file(tiny_sd, str(snap / "model.safetensors"))
    assert resolve_checkpoint("naver/DUSt3R_tiny", cache_dir=str(tmp_path / "hub")) == snap / "model.safetensors"
    model = _fresh()
    load_weights(model, "naver/DUSt3R_tiny", cache_dir=str(tmp_path / "hub"))
    _assert_loaded(model, tiny_sd)
    with pytest.raises(CheckpointError, match="naver/DUSt3R_absent.*not in the local Hugging Face cache"):
        resolve_checkpoint("naver/DUSt3R_absent", cache_dir=str(tmp_path / "hub"))


def test_missing_path_and_empty_dir(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth.*does not exist"):
        resolve_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="cannot choose"):
        resolve_checkpoint(tmp_path)


def test_mismatch_lists_keys(tmp_path, tiny_sd):
    sd = dict(tiny_sd)
    del sd["enc_blocks.1.mlp.fc2.bias"]
    sd["extra.weight"] = torch.zeros(2)
    sd["enc_norm.weight"] = torch.ones(7)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError) as info:
        load_weights(_fresh(), tmp_path / "bad.safetensors")
    msg = str(info.value)
    assert "bad.safetensors" in msg and "enc_blocks.1.mlp.fc2.bias" in msg and "extra.weight" in msg
    assert "enc_norm.weight (7,) vs (48,)" in msg


def test_differing_aliases_and_non_state_dict(tmp_path, tiny_sd):
    sd = dict(tiny_sd)
    sd["downstream_head1.dpt.scratch.layer_rn.0.weight"] = sd["downstream_head1.dpt.scratch.layer_rn.0.weight"] + 1
    with pytest.raises(CheckpointError, match="aliased DPT weights"):
        load_weights(_fresh(), sd)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_weights(_fresh(), tmp_path / "list.pth")


def test_pickle_needs_opt_in(tmp_path, tiny_sd):
    import datetime

    path = tmp_path / "with_object.pth"
    torch.save({"model": tiny_sd, "saved": datetime.datetime(2024, 1, 1)}, path)
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        load_weights(_fresh(), path)
    model = _fresh()
    load_weights(model, path, allow_pickle=True)
    _assert_loaded(model, tiny_sd)


def test_teacher_unpickles_only_with_the_environment_opt_in(tmp_path, tiny_sd, monkeypatch):
    import datetime

    from geovr_plugin_dust3r.config import DUSt3RTeacherConfig
    from geovr_plugin_dust3r.teacher import load_teacher

    path = tmp_path / "with_object.pth"
    torch.save({"model": tiny_sd, "saved": datetime.datetime(2024, 1, 1)}, path)
    config = DUSt3RTeacherConfig(pretrained=str(path), model_config="tiny", image_size=32)
    monkeypatch.delenv("GEOVR_ALLOW_PICKLE", raising=False)
    with pytest.raises(CheckpointError, match="GEOVR_ALLOW_PICKLE=1"):
        load_teacher(config)
    monkeypatch.setenv("GEOVR_ALLOW_PICKLE", "1")
    teacher = load_teacher(config)
    torch.testing.assert_close(teacher.model.state_dict()["enc_norm.weight"], tiny_sd["enc_norm.weight"])
