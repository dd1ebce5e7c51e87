"""Reference data lives in the repository: located beside the tests, missing data fails (never skips),
and nothing reads a ``shared/golden`` folder outside the checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geovr.testing.golden import ENV, golden_dir, resolve_golden

REPO = Path(__file__).resolve().parents[1]


def test_default_location_is_beside_the_calling_test(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert resolve_golden("vggt") == Path(__file__).resolve().parent / "golden" / "vggt"
    assert golden_dir("vggt", files=("tiny_aux.safetensors",)) == REPO / "tests" / "golden" / "vggt"


def test_missing_golden_data_fails_instead_of_skipping(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(pytest.fail.Exception, match="golden data 'nope' missing"):
        golden_dir("nope")
    with pytest.raises(pytest.fail.Exception, match=r"lacks \['absent.json'\]"):
        golden_dir("vggt", files=("tiny_io.safetensors", "absent.json"))
    # a pytest skip would be a different exception class: make sure the failure is not a skip
    try:
        golden_dir("nope", tmp_path / "nowhere")
    except BaseException as exc:  # noqa: BLE001 - the exception type is what is checked
        assert type(exc) is pytest.fail.Exception


def test_env_override_wins(monkeypatch, tmp_path):
    (tmp_path / "vggt").mkdir()
    monkeypatch.setenv(ENV, str(tmp_path))
    assert golden_dir("vggt", REPO / "elsewhere") == tmp_path / "vggt"
    with pytest.raises(pytest.fail.Exception, match=re.escape(f"${ENV}")):
        golden_dir("dust3r")


def test_every_plugin_parity_data_set_is_committed():
    for plugin, files in {
        "geovr-plugin-vggt": (
            "tiny_config.json",
            "tiny_weights.safetensors",
            "tiny_io.safetensors",
            "vggt_1b_state_dict_shapes.json",
        ),
        "geovr-plugin-dust3r": (
            "tiny_config.json",
            "tiny_weights.safetensors",
            "tiny_io.safetensors",
            "tiny_loss_values.json",
            "dust3r_vitl_512_dpt_state_dict_shapes.json",
        ),
    }.items():
        root = REPO / "plugins" / plugin / "tests" / "golden"
        assert sorted(f for f in files if not (root / f).is_file()) == [], plugin


def test_no_source_looks_outside_the_checkout_for_reference_data():
    tracked = subprocess.run(
        ["git", "ls-files", "*.py", "*.toml", "*.cfg", "*.sh", ".ci/*"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    pattern = re.compile(r"""shared[/\\]golden|["']shared["']\s*/\s*["']golden["']|\.\./shared""")
    offenders = [
        p
        for p in tracked
        if p != "tests/test_golden.py"
        and (REPO / p).is_file()
        and pattern.search((REPO / p).read_text(errors="replace"))
    ]
    assert offenders == []


# Runs in a copy of the checkout with an audit hook that refuses to open anything under a
# ``shared`` folder: the parity tests and the tiny VGGT recipe must work from the copy alone.
_GUARD = r"""
import sys
def _guard(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)) and "/shared/" in str(args[0]):
        raise PermissionError(f"read outside the checkout: {args[0]}")
sys.addaudithook(_guard)
"""


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(src.read_bytes())


@pytest.mark.slow
def test_a_copy_of_the_checkout_elsewhere_passes_parity_and_runs_tiny_vggt(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    _copy_checkout(clone)
    plugins = sorted(str(p) for p in (clone / "plugins").iterdir() if (p / "pyproject.toml").is_file())
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(clone), *plugins])
    tests = [
        "plugins/geovr-plugin-vggt/tests/test_vggt_model.py::test_config_sources",
        "plugins/geovr-plugin-vggt/tests/test_vggt_model.py::test_tiny_weights_load_strictly_with_reference_names",
        "plugins/geovr-plugin-vggt/tests/test_vggt_model.py::test_camera_depth_point_outputs",
        "plugins/geovr-plugin-dust3r/tests/test_dust3r_model.py::test_tiny_config_parses_to_the_tiny_arch",
        "plugins/geovr-plugin-dust3r/tests/test_dust3r_model.py::test_tiny_parity",
        "tests/test_geometry.py",
    ]
    code = (
        _GUARD
        + f"import pytest; sys.exit(pytest.main({tests!r} + ['-q', '-p', 'no:randomly', '-p', 'no:cacheprovider']))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert " passed" in res.stdout and "skipped" not in res.stdout, res.stdout[-2000:]
    run = _GUARD + (
        f"import geovr; assert geovr.__file__.startswith({str(clone)!r}), geovr.__file__\n"
        + "from geovr.cli.main import main; sys.exit(main(['run', 'recipes/tiny_vggt.toml', "
        "'trainer.max_steps=1', 'trainer.save_every=1', 'output_dir=out']))"
    )
    res = subprocess.run([sys.executable, "-c", run], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (clone / "out").is_dir()
