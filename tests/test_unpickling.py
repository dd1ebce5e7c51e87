"""Full unpickling of checkpoints is opted into from the command line or the environment only: a
recipe (or an override, which is recipe data saved with the run) setting ``allow_pickle`` is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from geovr.cli.main import main
from geovr.errors import RecipeError
from geovr.recipe import load_recipe
from geovr.unpickling import ENV, pickle_allowed

TINY = str(Path(__file__).resolve().parents[1] / "recipes" / "tiny_vggt.toml")
DUST3R = ['teacher.component="dust3r"']


@pytest.mark.parametrize("component", ["dust3r", "vggt"])
def test_a_recipe_cannot_turn_on_unpickling(tmp_path, component):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'extends = "{TINY}"\n[teacher]\ncomponent = "{component}"\npretrained = ""\n'
        f'model_config = "tiny"\nlayers = [0, 1, 2, 3]\nallow_pickle = true\n'
    )
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe)
    (problem,) = err.value.problems
    assert problem.startswith("teacher.allow_pickle: a recipe cannot enable full unpickling")
    assert "--allow-pickle" in problem and ENV in problem


def test_an_override_is_recipe_data_too(capsys):
    assert main(["validate", TINY, *DUST3R, "teacher.allow_pickle=true", "--no-preflight"]) == 2
    assert "teacher.allow_pickle: a recipe cannot enable full unpickling" in capsys.readouterr().err


def test_allow_pickle_false_is_accepted_and_has_no_effect():
    recipe = load_recipe(TINY, [*DUST3R, "teacher.allow_pickle=false"])
    assert not hasattr(recipe.teacher.config, "allow_pickle")


def test_environment_and_flag_opt_in(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert not pickle_allowed()
    monkeypatch.setenv(ENV, "1")
    assert pickle_allowed()
    monkeypatch.setenv(ENV, "0")
    assert not pickle_allowed()
    monkeypatch.delenv(ENV)
    assert main(["run", TINY, "--allow-pickle", "--dry-run"]) == 0  # the flag opts this process in
    assert pickle_allowed()
