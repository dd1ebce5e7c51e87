"""Plugin discovery through entry points, failure isolation and the environment variables."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import geovr
from geovr.errors import DuplicateComponentError, UnknownComponentError
from geovr.plugins import PluginHost
from geovr.testing.distributions import make_distribution, run_cli

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_external_distribution_is_listed_with_hooks_and_components(good_plugin):
    proc = run_cli("list-plugins", "--json", paths=[good_plugin])
    assert proc.returncode == 0, proc.stderr
    infos = {i["name"]: i for i in json.loads(proc.stdout)}
    fake = infos["fake_geovr_plugin"]
    assert fake["distribution"] == "geovr-plugin-fake" and fake["version"] == "1.0"
    assert fake["builtin"] is False
    assert fake["hooks"] == ["register_backbones", "register_objectives", "register_teachers"]
    assert fake["components"] == {
        "backbone": ["fake_backbone"],
        "teacher": ["fake_teacher"],
        "objective": ["fake_objective"],
    }
    assert all(not i["builtin"] for i in infos.values()), "built-ins listed without --all"
    with_all = {i["name"] for i in json.loads(run_cli("list-plugins", "--all", "--json", paths=[good_plugin]).stdout)}
    assert "geovr.objectives.plugin" in with_all


def test_recipe_naming_external_component_validates(good_plugin, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[backbone]\ncomponent = "fake_backbone"\n'
        '[teacher]\ncomponent = "fake_teacher"\nlayers = [3]\n'
        '[[objectives]]\ncomponent = "fake_obj"\n'
    )
    proc = run_cli("validate", str(recipe), paths=[good_plugin])
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and "3 components" in proc.stdout
    # a misused name is reported; without the plugin on the path its components are unknown
    recipe.write_text(recipe.read_text().replace('component = "fake_backbone"', 'component = "fake_teacher"'))
    proc = run_cli("validate", str(recipe), paths=[good_plugin])
    assert proc.returncode == 2 and "1 problem" in proc.stderr and "unknown backbone 'fake_teacher'" in proc.stderr
    assert "unknown teacher 'fake_teacher'" in run_cli("validate", str(recipe)).stderr


def test_broken_plugin_warns_and_others_load(good_plugin, tmp_path):
    broken = make_distribution(
        tmp_path / "broken", "geovr-plugin-broken", "broken_geovr_plugin", "raise RuntimeError('boom at import')\n"
    )
    proc = run_cli("list-plugins", "--json", paths=[good_plugin, broken])
    assert proc.returncode == 0, proc.stderr
    assert "geovr-plugin-broken" in proc.stderr and "boom at import" in proc.stderr
    names = {i["name"] for i in json.loads(proc.stdout)}
    assert "fake_geovr_plugin" in names and "broken_geovr_plugin" not in names
    strict = run_cli("list-plugins", env={"GEOVR_STRICT_PLUGINS": "1"}, paths=[good_plugin, broken])
    assert strict.returncode == 1
    assert "geovr-plugin-broken" in strict.stderr and "Traceback" not in strict.stderr


def test_misspelt_hook_is_rejected(tmp_path):
    bad = make_distribution(
        tmp_path / "s",
        "geovr-plugin-typo",
        "typo_geovr_plugin",
        """
        from geovr import hookimpl

        @hookimpl
        def register_teacher(register):   # missing "s"
            register("t", "x:y")
        """,
    )
    proc = run_cli("list-plugins", "--json", paths=[bad])
    assert "geovr-plugin-typo" in proc.stderr and "register_teacher" in proc.stderr
    assert "unknown hook 'register_teacher' (did you mean 'register_teachers'?)" in proc.stderr
    assert "typo_geovr_plugin" not in {i["name"] for i in json.loads(proc.stdout)}
    assert run_cli("list-plugins", env={"GEOVR_STRICT_PLUGINS": "1"}, paths=[bad]).returncode == 1


def test_same_distribution_twice_on_sys_path(good_plugin):
    proc = run_cli("list-plugins", "--json", paths=[good_plugin, good_plugin])
    assert proc.returncode == 0, proc.stderr
    names = [i["name"] for i in json.loads(proc.stdout)]
    assert names.count("fake_geovr_plugin") == 1


def test_allowlist_and_blocklist_from_the_shell(good_plugin):
    env = f"PYTHONPATH={good_plugin}"
    script = (
        f"set -e; cd {REPO}\n"
        f"{env} GEOVR_LOAD_PLUGINS= {sys.executable} -m geovr list-plugins --json > none.json\n"
        f"{env} GEOVR_LOAD_PLUGINS=geovr-plugin-fake {sys.executable} -m geovr list-plugins --json > only.json\n"
        f"{env} GEOVR_BLOCK_PLUGINS=fake_geovr_plugin {sys.executable} -m geovr list-plugins --json > blocked.json\n"
    )
    work = good_plugin.parent / "shell"
    work.mkdir()
    subprocess.run(["bash", "-c", script.replace(f"cd {REPO}", f"cd {work}")], check=True, timeout=120)
    assert json.loads((work / "none.json").read_text()) == []
    assert [i["name"] for i in json.loads((work / "only.json").read_text())] == ["fake_geovr_plugin"]
    assert "fake_geovr_plugin" not in {i["name"] for i in json.loads((work / "blocked.json").read_text())}


class _PluginA:
    @geovr.hookimpl
    def register_teachers(self, register):
        register("shared_name", lambda cfg, ctx: "from-a")


class _PluginB:
    @geovr.hookimpl
    def register_teachers(self, register):
        register("shared_name", lambda cfg, ctx: "from-b")


def test_duplicate_names_error_and_disambiguation():
    host = PluginHost().load(builtins=False, entry_points=False)
    host.register_object(_PluginA(), "a", distribution="dist-a")
    host.register_object(_PluginB(), "b", distribution="dist-b")
    with pytest.raises(DuplicateComponentError) as err:
        host.registry.get("teacher", "shared_name")
    assert "dist-a" in str(err.value) and "dist-b" in str(err.value)
    assert host.registry.get("teacher", "dist-b:shared_name").build({}) == "from-b"
    assert host.registry.get("teacher", "dist_a:shared_name").build({}) == "from-a"


def test_unknown_component_suggests():
    host = PluginHost().load(builtins=False, entry_points=False)
    host.register_object(_PluginA(), "a", distribution="dist-a")
    with pytest.raises(UnknownComponentError) as err:
        host.registry.get("teacher", "shared_nme")
    assert "Did you mean 'shared_name'" in str(err.value) and "Registered teachers: shared_name" in str(err.value)


def test_registration_errors_roll_back_the_plugin():
    class Half:
        @geovr.hookimpl
        def register_teachers(self, register):
            register("ok_one", lambda c, x: 1)
            register("bad one", 42)  # not callable, not "module:attr"

    host = PluginHost().load(builtins=False, entry_points=False)
    with pytest.warns(UserWarning, match="half-dist"):
        host.register_object(Half(), "half", distribution="half-dist")
    assert host.registry.names("teacher") == [] and "half" not in host.meta
