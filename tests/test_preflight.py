"""``geovr validate`` runs the preflight of ``geovr run``: files and checkpoints on this machine, every
problem at once, Hugging Face ids looked up in the local cache without any network access."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import geovr
from geovr.cli.main import main
from geovr.errors import RecipeError
from geovr.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
TINY_VGGT = str(REPO / "recipes" / "tiny_vggt.toml")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a host name fails the test."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"network access during preflight: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return calls


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # online by configuration: must not matter
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_validate_reports_every_missing_hub_checkpoint_without_network(no_network, empty_hub_cache, capsys, tmp_path):
    rc = main(
        [
            "validate",
            TINY_VGGT,
            'backbone.pretrained="nobody/missing-student"',
            'teacher.pretrained="nobody/missing-teacher"',
            f'output_dir="{tmp_path / "run"}"',
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "2 problems" in err
    assert "backbone.pretrained: 'nobody/missing-student' is not a local path" in err
    assert "teacher.pretrained: 'nobody/missing-teacher' is not a local path" in err
    assert "hf download nobody/missing-teacher" in err
    assert no_network == []


def test_dust3r_snapshot_lookup_is_local_too(no_network, empty_hub_cache):
    with pytest.raises(RecipeError) as err:
        load_recipe(
            TINY_VGGT,
            ['teacher.component="dust3r"', 'teacher.pretrained="nobody/missing-dust3r"', 'teacher.model_config="tiny"'],
            preflight=True,
        )
    assert [p for p in err.value.problems if "missing-dust3r" in p]
    assert no_network == []


def test_validate_ok_means_build_passes_its_preflight(tmp_path, capsys):
    assert main(["validate", TINY_VGGT, f'output_dir="{tmp_path / "run"}"']) == 0
    assert "ok (tiny_vggt" in capsys.readouterr().out


def test_validate_and_build_report_the_same_machine_problems(tmp_path):
    overrides = [f'teacher.pretrained="{tmp_path / "vggt.safetensors"}"', f'backbone.adapter="{tmp_path / "lora"}"']
    with pytest.raises(RecipeError) as at_validate:
        load_recipe(TINY_VGGT, overrides, preflight=True)
    recipe = load_recipe(TINY_VGGT, overrides)  # structure alone is fine
    with pytest.raises(RecipeError) as at_build:
        geovr.build(recipe)
    assert at_validate.value.problems == at_build.value.problems
    assert len(at_validate.value.problems) == 2


def test_no_preflight_checks_structure_only(capsys, tmp_path):
    args = ["validate", TINY_VGGT, 'teacher.pretrained="/no/such/vggt.safetensors"']
    assert main(args) == 2
    assert "teacher.pretrained: checkpoint path not found: /no/such/vggt.safetensors" in capsys.readouterr().err
    assert main([*args, "--no-preflight"]) == 0
    assert "structure only" in capsys.readouterr().out


def test_structure_and_machine_problems_come_together(capsys):
    rc = main(["validate", TINY_VGGT, "trainer.max_stepz=3", 'teacher.pretrained="/no/such/vggt.pt"'])
    err = capsys.readouterr().err
    assert rc == 2 and "2 problems" in err and "max_stepz" in err and "/no/such/vggt.pt" in err


def test_a_raising_preflight_is_reported_with_the_others():
    from types import SimpleNamespace

    from geovr.recipe.preflight import run_preflight

    class Boom:
        def preflight(self):
            raise OSError("disk on fire")

    class Fine:
        def preflight(self):
            return ["path: file not found: x"]

    choices = [
        SimpleNamespace(where="teacher", kind="teacher", component="boom", config=Boom()),
        SimpleNamespace(where="data.train", kind="dataset", component="d", config=Fine()),
    ]
    assert run_preflight(choices) == [
        "teacher: preflight of teacher 'boom' failed: OSError: disk on fire",
        "data.train.path: file not found: x",
    ]
