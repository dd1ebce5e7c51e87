"""Packaging habits: one place for each distribution's version, plugins pinned to the core's range."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECTS = [REPO, *sorted(p.parent for p in (REPO / "plugins").glob("*/pyproject.toml"))]


def _version_in(module_file: Path) -> str:
    """The literal ``__version__`` assigned in a module (as setuptools reads it, without importing)."""
    for node in ast.parse(module_file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{module_file}: no __version__ literal")


@pytest.mark.parametrize("project", PROJECTS, ids=[p.name for p in PROJECTS])
def test_version_lives_in_the_package(project):
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in data["project"], f"{project}/pyproject.toml: a static version (use dynamic)"
    assert "version" in data["project"].get("dynamic", [])
    attr = data["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    package, _, name = attr.rpartition(".")
    assert name == "__version__"
    assert _version_in(project / package.replace(".", "/") / "__init__.py")


def test_plugins_pin_the_core_minor_series():
    from packaging.requirements import Requirement

    import geovr

    major, minor = (int(x) for x in geovr.__version__.split(".")[:2])
    for project in PROJECTS[1:]:
        deps = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
        core = [Requirement(d) for d in deps if Requirement(d).name == "geovr"]
        assert len(core) == 1, f"{project.name}: depends on geovr once"
        spec = core[0].specifier
        assert spec.contains(geovr.__version__), f"{project.name}: {spec} excludes geovr {geovr.__version__}"
        assert not spec.contains(f"{major}.{minor + 1}.0"), f"{project.name}: {spec} allows the next minor series"
