"""Broken plugins are contained: a factory raising at build, a plugin calling ``sys.exit`` at import."""

from __future__ import annotations

import types

import pytest

from geovr import hookimpl
from geovr.errors import GeovrError
from geovr.plugins import load_plugins
from geovr.recipe import build, load_recipe
from geovr.recipe.load import shipped_recipes
from geovr.testing.distributions import make_distribution, run_cli


@pytest.fixture
def boom_plugin():
    def factory(config, context):
        raise RuntimeError("out of coffee")

    def exiting(config, context):
        raise SystemExit(4)

    @hookimpl
    def register_datasets(register):
        register("boom_data", factory)
        register("exit_data", exiting)

    host = load_plugins()
    host.register_object(
        types.SimpleNamespace(register_datasets=register_datasets), "boom_plugin", distribution="geovr-plugin-boom"
    )
    yield
    host.unregister("boom_plugin")


@pytest.mark.parametrize(
    "component, cause", [("boom_data", "RuntimeError: out of coffee"), ("exit_data", "SystemExit: 4")]
)
def test_a_factory_that_raises_names_the_plugin_distribution_and_component(boom_plugin, component, cause):
    recipe = load_recipe(shipped_recipes()["tiny_synthetic"], [f'data.train={{component="{component}"}}'])
    with pytest.raises(GeovrError) as err:
        build(recipe, stages=("data",))
    msg = str(err.value)
    assert msg.startswith(f"data.train: dataset '{component}' failed to build: {cause} ")
    assert "plugin 'boom_plugin', distribution 'geovr-plugin-boom'" in msg
    assert err.value.exit_code == 1


def test_a_plugin_calling_sys_exit_at_import_is_contained(good_plugin, tmp_path):
    quitter = make_distribution(
        tmp_path / "q", "geovr-plugin-quitter", "quitter_geovr_plugin", "import sys\nsys.exit(3)\n"
    )
    proc = run_cli("list-plugins", paths=[good_plugin, quitter])
    assert proc.returncode == 0, proc.stderr
    assert (
        "plugin 'quitter_geovr_plugin' from distribution 'geovr-plugin-quitter' failed to load: RuntimeError: "
        "the plugin called sys.exit(3) while loading"
    ) in proc.stderr
    assert "fake_geovr_plugin" in proc.stdout
    strict = run_cli("list-plugins", env={"GEOVR_STRICT_PLUGINS": "1"}, paths=[good_plugin, quitter])
    assert strict.returncode == 1
    assert "geovr: error: plugin 'quitter_geovr_plugin'" in strict.stderr and "Traceback" not in strict.stderr
