"""``extends`` merge rules (geovr.recipe.merge, docs/recipes.md) and ``geovr show --origin``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geovr.cli.main import main
from geovr.errors import RecipeError
from geovr.recipe import load_recipe
from geovr.recipe.load import load_raw, shipped_recipes
from geovr.recipe.merge import annotate, merge, plain

BASE = shipped_recipes()["tiny_synthetic"]


def child(tmp_path: Path, body: str, name: str = "child.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'extends = "{BASE}"\nname = "child"\n{body}')
    return path


def components(recipe, key="objectives"):
    return [c.component for c in getattr(recipe, key)]


def test_same_component_updates_that_entry_and_keeps_its_other_options(tmp_path):
    recipe = load_recipe(child(tmp_path, '[[objectives]]\ncomponent = "depth"\nweight = 0.25\n'))
    assert components(recipe) == ["camera_pose", "depth", "metric_scale", "feature_distill"]
    depth = recipe.objectives[1]
    assert depth.options == {"channels": [16, 16, 32, 32], "features": 16, "weight": 0.25}
    assert recipe.origins["objectives.1.weight"] == str(tmp_path / "child.toml")
    assert recipe.origins["objectives.1.features"].endswith("tiny_synthetic.toml")


def test_a_new_component_is_appended(tmp_path):
    body = '[[evaluators]]\ncomponent = "vsibench"\ndata_dir = "data/vsibench"\n'
    recipe = load_recipe(child(tmp_path, body))
    assert components(recipe, "evaluators") == ["synthetic_qa", "geometry_probe", "vsibench"]
    assert components(recipe) == ["camera_pose", "depth", "metric_scale", "feature_distill"]  # untouched


def test_enabled_false_drops_an_inherited_entry(tmp_path):
    body = (
        '[[objectives]]\ncomponent = "metric_scale"\nenabled = false\n'
        '[[evaluators]]\ncomponent = "synthetic_qa"\nenabled = false\n'
    )
    recipe = load_recipe(child(tmp_path, body))
    assert components(recipe) == ["camera_pose", "depth", "feature_distill"]
    assert components(recipe, "evaluators") == ["geometry_probe"]
    assert "enabled" not in recipe.raw["objectives"][0]


def test_disabling_a_component_the_parent_lacks_is_reported(tmp_path):
    body = '[[objectives]]\ncomponent = "metric_scal"\nenabled = false\n'
    with pytest.raises(RecipeError) as err:
        load_recipe(child(tmp_path, body))
    assert "disables 'metric_scal'" in str(err.value) and "camera_pose, depth, feature_distill, metric_scale" in str(
        err.value
    )


def test_a_changed_component_replaces_the_table_instead_of_inheriting_its_options(tmp_path):
    body = (
        '[teacher]\ncomponent = "vggt"\npretrained = ""\nmodel_config = "tiny"\nlayers = [0, 1, 2, 3]\n'
        '[metric_teacher]\ncomponent = "oracle"\n'
    )
    recipe = load_recipe(child(tmp_path, body))  # oracle's feature_dim/num_layers/patch_size are not vggt options
    assert recipe.teacher.component == "vggt"
    assert recipe.teacher.options == {"pretrained": "", "model_config": "tiny", "layers": [0, 1, 2, 3]}
    assert recipe.teacher.config.image_size == 504  # vggt's default, not anything of the oracle
    assert "teacher.image_size" not in recipe.origins


def test_a_table_without_component_inherits_and_updates(tmp_path):
    recipe = load_recipe(child(tmp_path, "[teacher]\nfeature_dim = 8\n"))
    assert recipe.teacher.component == "oracle"
    assert recipe.teacher.options["feature_dim"] == 8 and recipe.teacher.options["num_layers"] == 4


def test_repeated_components_match_in_order():
    base = annotate(
        {
            "evaluators": [
                {"component": "vsibench", "protocol": "lmms-eval"},
                {"component": "other"},
                {"component": "vsibench", "protocol": "geovr"},
            ]
        },
        "base.toml",
    )
    over = annotate(
        {
            "evaluators": [
                {"component": "vsibench", "limit": 1},
                {"component": "vsibench", "limit": 2},
                {"component": "vsibench", "limit": 3},
            ]
        },
        "child.toml",
    )
    tree, problems = merge(base, over)
    assert problems == []
    assert plain(tree)["evaluators"] == [
        {"component": "vsibench", "protocol": "lmms-eval", "limit": 1},
        {"component": "other"},
        {"component": "vsibench", "protocol": "geovr", "limit": 2},
        {"component": "vsibench", "limit": 3},
    ]


def test_entries_without_component_and_bad_enabled_are_problems(tmp_path):
    body = '[[objectives]]\nweight = 2\n[[evaluators]]\ncomponent = "geometry_probe"\nenabled = "no"\n'
    with pytest.raises(RecipeError) as err:
        load_recipe(child(tmp_path, body))
    problems = err.value.problems
    assert any("objectives: entry 0" in p and "has no component" in p for p in problems)
    assert any(p.startswith("evaluators.1.enabled: expected true or false") for p in problems)


def test_an_empty_array_clears_the_inherited_entries(tmp_path):
    recipe = load_recipe(child(tmp_path, "evaluators = []\n"))
    assert recipe.evaluators == []


def test_override_can_disable_and_indices_count_remaining_entries(tmp_path):
    path = child(tmp_path, '[[objectives]]\ncomponent = "depth"\nenabled = false\n')
    recipe = load_recipe(path, ["objectives.1.weight=0.5", "objectives.0.enabled=false"])
    assert components(recipe) == ["metric_scale", "feature_distill"]
    assert recipe.objectives[0].options["weight"] == 0.5  # index 1 after depth was dropped = metric_scale


def test_plain_array_item_override_keeps_working(tmp_path):
    recipe = load_recipe(BASE, ["teacher.layers.0=3"])
    assert recipe.teacher.options["layers"] == [3, 1, 2, 3]
    assert recipe.origins["teacher.layers"] == "override teacher.layers.0=3"


def test_every_shipped_recipe_resolves_to_plain_data():
    for name, path in shipped_recipes().items():
        raw = load_raw(path)
        assert "extends" not in raw and raw["name"] == name


def test_show_origin_names_the_file_the_override_and_defaults(tmp_path, capsys):
    path = child(tmp_path, '[[objectives]]\ncomponent = "depth"\nweight = 0.25\n')
    assert main(["show", str(path), "trainer.lr=0.01", "--origin"]) == 0
    text = capsys.readouterr().out
    assert f"weight = 0.25  # {path}" in text
    assert "lr = 0.01  # override trainer.lr=0.01" in text
    assert "features = 16  # " in text and "tiny_synthetic.toml" in text.split("features = 16  # ", 1)[1].split("\n")[0]
    assert "max_grad_norm = 1.0  # default" in text
    assert main(["show", str(path), "--origin", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recipe"]["objectives"][1]["weight"] == 0.25
    assert data["origins"]["objectives.1.weight"] == str(path)
    assert data["origins"]["name"] == str(path) and data["origins"]["seed"].endswith("tiny_synthetic.toml")
    assert data["origins"]["trainer.max_grad_norm"] == "default"


def test_the_documented_example_resolves_as_documented(tmp_path):
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "recipes.md").read_text()
    block = re.search(r'```toml\n(extends = "tiny_synthetic"\n.*?)```', text, flags=re.S).group(1)
    (tmp_path / "variant.toml").write_text(block)
    recipe = load_recipe(tmp_path / "variant.toml")
    assert [(c.component, c.config.weight) for c in recipe.objectives] == [
        ("camera_pose", 2.5),
        ("depth", 0.5),
        ("feature_distill", 1.0),
    ]
    assert components(recipe, "evaluators") == ["synthetic_qa", "geometry_probe", "vsibench"]
    assert recipe.teacher.component == "vggt" and "feature_dim" not in recipe.teacher.options
