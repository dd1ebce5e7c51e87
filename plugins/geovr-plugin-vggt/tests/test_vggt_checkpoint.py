"""Checkpoint loading (.pt, safetensors file/dir, HF cache id), strict key errors, and conversion."""

from __future__ import annotations

import argparse
import hashlib

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

from geovr.errors import CheckpointError  # noqa: E402
from geovr_plugin_vggt import checkpoint as ckpt  # noqa: E402
from geovr_plugin_vggt.cli import add_commands  # noqa: E402
from geovr_plugin_vggt.model import VGGT  # noqa: E402
from geovr_plugin_vggt.testing import tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def weights(root):
    return load_file(str(root / "tiny_weights.safetensors"))


@pytest.fixture(scope="module")
def case_b(root):
    io = load_file(str(root / "tiny_io.safetensors"))
    return {k.split(".", 1)[1]: v for k, v in io.items() if k.startswith("case_b.")}


def fresh(root, **enable):
    torch.manual_seed(0)
    return VGGT.from_config(tiny_config(root), **enable).eval()


def assert_reproduces_golden(model, case_b):
    with torch.no_grad():
        out = model(case_b["images"], query_points=case_b["query_points"])
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        torch.testing.assert_close(out[key], case_b[key], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["track"], case_b["track"], atol=1e-4, rtol=1e-5)


def test_pt_checkpoint_reproduces_golden_outputs(root, weights, case_b, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(weights, path)
    model = fresh(root)
    assert ckpt.load_weights(model, path) == path
    assert_reproduces_golden(model, case_b)


def test_safetensors_file_and_directory(root, weights, case_b, tmp_path):
    (tmp_path / "ckpt").mkdir()
    save_file(weights, str(tmp_path / "ckpt" / "model.safetensors"))
    assert ckpt.resolve_checkpoint(tmp_path / "ckpt") == tmp_path / "ckpt" / "model.safetensors"
    model = fresh(root)
    ckpt.load_weights(model, str(tmp_path / "ckpt"))
    assert_reproduces_golden(model, case_b)
    # sharded directory: two files, merged
    shards = tmp_path / "shards"
    shards.mkdir()
    keys = sorted(weights)
    save_file({k: weights[k] for k in keys[:300]}, str(shards / "part-00001.safetensors"))
    save_file({k: weights[k] for k in keys[300:]}, str(shards / "part-00002.safetensors"))
    assert set(ckpt.read_state_dict(ckpt.resolve_checkpoint(shards))) == set(weights)


def test_wrapped_pt_state_dict_is_unwrapped(weights, tmp_path):
    torch.save({"model": weights, "epoch": 3}, tmp_path / "wrapped.pt")
    assert set(ckpt.read_state_dict(tmp_path / "wrapped.pt")) == set(weights)


def test_disabled_heads_ignore_their_checkpoint_tensors(root, weights, case_b, tmp_path):
    model = fresh(root, enable_track=False, enable_point=False)
    ckpt.load_weights(model, root / "tiny_weights.safetensors")
    with torch.no_grad():
        out = model(case_b["images"])
    torch.testing.assert_close(out["depth"], case_b["depth"], atol=1e-5, rtol=1e-5)


def test_wrong_key_gives_clear_error(root, weights, tmp_path):
    bad = dict(weights)
    bad["aggregator.camera_tokn"] = bad.pop("aggregator.camera_token")
    path = tmp_path / "bad.safetensors"
    save_file(bad, str(path))
    with pytest.raises(CheckpointError) as err:
        ckpt.load_weights(fresh(root), path)
    msg = str(err.value)
    assert "missing keys (1): aggregator.camera_token" in msg
    assert "unexpected keys (1): aggregator.camera_tokn" in msg
    assert str(path) in msg


def test_shape_mismatch_and_wrong_config_errors(root, weights, tmp_path):
    bad = dict(weights)
    bad["camera_head.embed_pose.bias"] = torch.zeros(7)
    save_file(bad, str(tmp_path / "shape.safetensors"))
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatches \(1\): camera_head.embed_pose.bias: "
        r"checkpoint \(7,\) vs model \(64,\)",
    ):
        ckpt.load_weights(fresh(root), tmp_path / "shape.safetensors")
    with torch.device("meta"):
        big = VGGT(enable_track=False)
    with pytest.raises(CheckpointError, match="missing keys") as err:
        ckpt.check_state_dict(big, weights, "tiny")
    assert "shape mismatches" in str(err.value) and "model_config" in str(err.value)


def test_missing_path_and_uncached_hf_id(tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        CheckpointError,
        match=r"'facebook/VGGT-1B' is not in the local Hugging Face cache.*"
        r"huggingface-cli download facebook/VGGT-1B",
    ):
        ckpt.resolve_checkpoint("facebook/VGGT-1B")
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.resolve_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds none of"):
        ckpt.resolve_checkpoint(tmp_path / "empty")


def test_hf_id_resolved_from_local_cache(root, weights, case_b, tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny-vggt"
    data = (root / "tiny_weights.safetensors").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / digest).write_bytes(data)
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(repo / "blobs" / digest)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(cache))
    path = ckpt.resolve_checkpoint("org/tiny-vggt")
    assert path.name == "model.safetensors"
    assert ckpt.file_digest(path) == digest  # taken from the blob name
    model = fresh(root)
    ckpt.load_weights(model, "org/tiny-vggt")
    assert_reproduces_golden(model, case_b)


def test_unsafe_pickle_is_refused(tmp_path):
    torch.save({"w": torch.zeros(1), "obj": argparse.Namespace(a=1)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot read VGGT checkpoint"):
        ckpt.read_state_dict(tmp_path / "evil.pt")


def test_file_digest_is_sha256(root):
    path = root / "tiny_weights.safetensors"
    assert ckpt.file_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_convert_pt_to_safetensors(root, weights, case_b, tmp_path):
    torch.save(weights, tmp_path / "model.pt")
    out = ckpt.convert_checkpoint(
        tmp_path / "model.pt", tmp_path / "out" / "tiny.safetensors", model_config=tiny_config(root)
    )
    converted = load_file(str(out))
    assert set(converted) == set(weights) and all(torch.equal(converted[k], weights[k]) for k in weights)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.safetensors"]  # no temp file left
    model = fresh(root)
    ckpt.load_weights(model, out)
    assert_reproduces_golden(model, case_b)


def test_convert_refuses_wrong_keys_and_writes_nothing(root, weights, tmp_path):
    bad = dict(weights)
    bad.pop("aggregator.patch_embed.mask_token")
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="missing keys \\(1\\): aggregator.patch_embed.mask_token"):
        ckpt.convert_checkpoint(tmp_path / "bad.pt", tmp_path / "bad.safetensors", model_config=tiny_config(root))
    assert not (tmp_path / "bad.safetensors").exists()
    with pytest.raises(CheckpointError, match="should end with .safetensors"):
        ckpt.convert_checkpoint(root / "tiny_weights.safetensors", tmp_path / "x.pt", verify=False)


def test_cli_convert_command(root, weights, tmp_path, capsys):
    import json

    torch.save(weights, tmp_path / "model.pt")
    cfg_path = tmp_path / "tiny.json"
    cfg_path.write_text(json.dumps({"tiny": tiny_config(root)}))
    parser = argparse.ArgumentParser(prog="geovr")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "vggt",
            "convert",
            str(tmp_path / "model.pt"),
            str(tmp_path / "m.safetensors"),
            "--model-config",
            str(cfg_path),
        ]
    )
    assert args.func(args) == 0
    assert "wrote" in capsys.readouterr().out
    assert set(load_file(str(tmp_path / "m.safetensors"))) == set(weights)
    with pytest.raises(SystemExit):
        parser.parse_args(["vggt"])  # a sub-command is required


def test_assign_into_meta_model(root, case_b):
    with torch.device("meta"):
        model = VGGT.from_config(tiny_config(root))
    ckpt.load_weights(model, root / "tiny_weights.safetensors", assign=True)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert_reproduces_golden(model.eval(), case_b)


@pytest.mark.parametrize(
    "make_dst, message",
    [
        (
            lambda t: t / "file" / "out.safetensors",
            "cannot write .*/file/out.safetensors: .*/file is a file, not a directory",
        ),
        (
            lambda t: "/sys/geovr-vggt.safetensors",
            "cannot write /sys/geovr-vggt.safetensors: (Permission denied|Operation not permitted)",
        ),
        (lambda t: t / "dir.safetensors", "cannot write .*/dir.safetensors: it is a directory"),
    ],
)
def test_cli_convert_to_an_unwritable_destination_is_one_clear_error(tmp_path, capsys, make_dst, message):
    """Checked before the source is read: no traceback, exit code 1, the destination named."""
    import re

    from geovr.cli.main import main

    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.safetensors").mkdir()
    code = main(["vggt", "convert", str(tmp_path / "model.pt"), str(make_dst(tmp_path)), "--no-verify"])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(f"geovr: error: {message}", err), err
    assert "Traceback" not in err
