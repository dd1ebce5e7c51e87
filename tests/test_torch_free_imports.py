"""``import geovr``, ``geovr list-plugins`` and every plugin and config module import without torch.

Recipes are listed, validated and planned on machines without a GPU stack, and every component's factory is
a lazy ``"module:attr"`` string, so these modules must not import torch (or, where listed, transformers,
peft or numpy). Each case runs in a fresh interpreter; a first-party plugin's case is skipped when that
plugin is not installed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

#: case → (code run in a fresh interpreter, modules it must not import, distribution package it needs)
CASES = {
    "geovr-load-plugins": (
        "import geovr; h = geovr.load_plugins()\n"
        "assert ('dataset', 'synthetic_rooms') in h.registry and ('teacher', 'oracle') in h.registry\n"
        "assert ('dataset', 'video_qa') in h.registry and ('teacher', 'hf_depth') in h.registry\n",
        ("torch",),
        None,
    ),
    "cli-list-plugins": (
        "from geovr.cli.main import main\nassert main(['list-plugins', '--all', '--json']) == 0\n",
        ("torch", "transformers", "numpy"),
        None,
    ),
    "objectives": ("import geovr.objectives.plugin, geovr.objectives.configs\n", ("torch",), None),
    "teachers": ("import geovr.teachers.plugin, geovr.teachers.configs\n", ("torch",), None),
    "train": ("import geovr.train.plugin, geovr.train.configs, geovr.train.launch\n", ("torch",), None),
    "eval": (
        "import geovr.eval.plugin, geovr.eval.configs, geovr.eval.cli, geovr.eval.metrics\n"
        "import geovr.eval.vsibench, geovr.eval.prompts, geovr.eval.report, geovr.eval.qa, geovr.eval.probe\n"
        "import geovr.eval.evaluators, geovr.eval.video, geovr.eval.callback\n",
        ("torch",),
        None,
    ),
    "plugin-da3": ("import geovr_plugin_da3.plugin, geovr_plugin_da3.config\n", ("torch",), "geovr_plugin_da3"),
    "plugin-dust3r": (
        "import geovr_plugin_dust3r.plugin, geovr_plugin_dust3r.config\n"
        "from geovr_plugin_dust3r.config import DUSt3RTeacherConfig as C\nC(model_config='tiny').check()\n",
        ("torch",),
        "geovr_plugin_dust3r",
    ),
    "plugin-llava": (
        "import geovr_plugin_llava.plugin, geovr_plugin_llava.config\n",
        ("torch", "transformers", "peft"),
        "geovr_plugin_llava",
    ),
    "plugin-qwen-vl": (
        "import geovr_plugin_qwen_vl.plugin, geovr_plugin_qwen_vl.config\n",
        ("torch", "transformers"),
        "geovr_plugin_qwen_vl",
    ),
    "plugin-template": (
        "import geovr_plugin_template.plugin, geovr_plugin_template.config\n",
        ("torch",),
        "geovr_plugin_template",
    ),
    "plugin-vggt": ("import geovr_plugin_vggt.plugin, geovr_plugin_vggt.config\n", ("torch",), "geovr_plugin_vggt"),
}


def imports_in_fresh_interpreter(code: str, forbidden: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter, then fail (exit 1, names on stderr) if it imported any of ``forbidden``."""
    check = f"\nimport sys\nbad = [m for m in {forbidden!r} if m in sys.modules]\nassert not bad, f'imported {{bad}}'\n"
    return subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", sorted(CASES))
def test_imports_without_torch(case):
    code, forbidden, needs = CASES[case]
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not installed")
    proc = imports_in_fresh_interpreter(code, forbidden)
    assert proc.returncode == 0, f"{case}: {proc.stderr}"


def test_the_check_sees_a_forbidden_import():
    proc = imports_in_fresh_interpreter("import json\n", ("json", "torch"))
    assert proc.returncode == 1 and "imported ['json']" in proc.stderr
    assert imports_in_fresh_interpreter("import json\n", ("torch",)).returncode == 0
