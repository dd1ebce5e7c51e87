"""Repository-level promises: README set-up commands, CI script, docs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S).group(1)
    return [line.strip() for line in block.strip().splitlines()]


def test_readme_opens_with_two_setup_commands():
    text = (REPO / "README.md").read_text()
    assert text.index("```bash") < 20, "the set-up commands must open the README"
    cmds = readme_commands()
    assert len(cmds) == 2
    assert cmds[0].startswith("pip install") and "geovr run recipes/" in cmds[0]
    assert cmds[1].startswith("pip install") and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    test_cmd = readme_commands()[1].split("&&")[-1].strip()
    install = readme_commands()[1].split("&&")[0].strip().removeprefix("pip install ")
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(test_cmd)}$", ci, flags=re.M), f"{test_cmd!r} not run by .ci/run"
    assert install.strip() in ci, f".ci/run does not install {install!r}"
    assert '"$rc" -eq 5' in ci, ".ci/run must treat pytest exit code 5 as a failure"


def test_requirements_install_every_first_party_plugin():
    listed = set(re.findall(r"^-e (plugins/[\w.-]+)", (REPO / "requirements.txt").read_text(), flags=re.M))
    present = {f"plugins/{p.name}" for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").exists()}
    assert listed == present


def test_production_code_imports_no_test_helper():
    """Test doubles live in ``testing`` modules (``geovr.testing``, ``geovr_plugin_*.testing``) and tests;
    code a recipe runs never imports them (the Qwen-VL ``geovr-tiny`` models are ``tiny_models``)."""
    import ast

    offenders = []
    sources = [*(REPO / "geovr").rglob("*.py"), *(REPO / "plugins").glob("*/geovr_plugin_*/**/*.py")]
    for path in sorted(sources):
        rel = path.relative_to(REPO)
        if "testing" in rel.parts or path.stem == "testing":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(rel))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            offenders += [f"{rel}:{node.lineno}: {n}" for n in names if "testing" in n.split(".")]
    assert len(sources) > 100 and offenders == []
