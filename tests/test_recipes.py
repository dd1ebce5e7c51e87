"""Recipe loading, overrides, extends and all-problems-at-once validation."""

from __future__ import annotations

import attrs
import pytest

import geovr
from geovr.errors import RecipeError
from geovr.recipe import load_recipe
from geovr.recipe.load import apply_overrides, parse_value, shipped_recipes
from geovr.testing import registered
from geovr.testing.distributions import run_cli


@attrs.define
class BackboneCfg:
    pretrained: str
    dtype: str = "float32"
    freeze: list[str] = attrs.Factory(list)


@attrs.define
class TeacherCfg:
    layers: list[int] = [4, 11, 17, 23]
    num_layers: int = 24

    def provides(self):
        return frozenset({"depth", "features"})

    def check(self):
        return [f"layer {x} outside 0..{self.num_layers - 1}" for x in self.layers if not 0 <= x < self.num_layers]


@attrs.define
class ObjectiveCfg:
    weight: float = 1.0

    def requires(self):
        return frozenset({"pose_enc"})


@attrs.define
class DistillCfg:
    weight: float = 1.0

    def requires(self):
        return frozenset({"features"})


class RecipePlugin:
    @geovr.hookimpl
    def register_backbones(self, register):
        register("toy_backbone", lambda c, x: ("backbone", c), config=BackboneCfg)

    @geovr.hookimpl
    def register_teachers(self, register):
        register("toy_teacher", lambda c, x: ("teacher", c), config=TeacherCfg)

    @geovr.hookimpl
    def register_objectives(self, register):
        register("toy_pose", lambda c, x: ("pose", c), config=ObjectiveCfg)
        register("toy_distill", lambda c, x: ("distill", c), config=DistillCfg)

    @geovr.hookimpl
    def register_datasets(self, register):
        register("toy_data", lambda c, x: [1, 2, 3])

    @geovr.hookimpl
    def register_trainers(self, register):
        register("toy_trainer", lambda c, x: "trainer")


GOOD = """
name = "toy"
seed = 3
[backbone]
component = "toy_backbone"
pretrained = "some/model"
[teacher]
component = "toy_teacher"
[[objectives]]
component = "toy_distill"
weight = 0.5
[data.train]
component = "toy_data"
[trainer]
component = "toy_trainer"
"""


@pytest.fixture
def plugin_host():
    with registered(RecipePlugin(), "toy-recipes", isolated=True) as host:
        yield host


def write(tmp_path, text, name="r.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_recipe_validates_and_builds(plugin_host, tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD), require_training=True)
    assert recipe.name == "toy" and recipe.seed == 3
    assert recipe.backbone.config == BackboneCfg(pretrained="some/model")
    assert recipe.objectives[0].config.weight == 0.5
    ctx = geovr.build(recipe)
    assert ctx.backbone == ("backbone", BackboneCfg(pretrained="some/model"))
    assert ctx.objectives == [("distill", DistillCfg(weight=0.5))]
    assert ctx.datasets["train"] == [1, 2, 3] and ctx.trainer == "trainer"


def test_three_mistakes_reported_at_once(plugin_host, tmp_path):
    bad = (
        GOOD.replace('component = "toy_teacher"', 'component = "toy_teachr"')
        .replace("weight = 0.5", "wieght = 0.5")
        .replace("seed = 3", 'seed = 3\nouptut_dir = "x"')
    )
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, bad))
    problems = err.value.problems
    assert len(problems) == 3, problems
    text = str(err.value)
    assert "did you mean 'output_dir'" in text
    assert "unknown teacher 'toy_teachr'. Did you mean 'toy_teacher'" in text
    assert "objectives.0: unknown option 'wieght'" in text and "did you mean 'weight'" in text


def test_cli_reports_all_problems_with_exit_code_2(tmp_path):
    # uses the real registry in a subprocess: unknown backbone, unknown key, bad override path
    p = write(tmp_path, 'nmae = "x"\n[backbone]\ncomponent = "no_such_backbone"\n')
    proc = run_cli("validate", str(p), "objectives.3.weight=1")
    assert proc.returncode == 2
    assert "3 problems" in proc.stderr, proc.stderr
    assert "nmae" in proc.stderr and "no_such_backbone" in proc.stderr and "objectives.3.weight" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_syntax_error_has_line_and_column(tmp_path):
    p = write(tmp_path, 'name = "x"\nseed = \n')
    with pytest.raises(RecipeError) as err:
        load_recipe(p)
    assert f"{p}:2:8: TOML syntax error" in str(err.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(RecipeError, match="nope.toml: recipe file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_types_required_options_and_check(plugin_host, tmp_path):
    bad = GOOD.replace('pretrained = "some/model"', "dtype = 16") + "layers = [4, 30]\n"
    bad = bad.replace('[teacher]\ncomponent = "toy_teacher"\n', "")
    bad += '[teacher]\ncomponent = "toy_teacher"\nlayers = [4, 30]\n'
    bad = bad.replace("layers = [4, 30]\n[teacher]", "[teacher]")
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, bad))
    text = str(err.value)
    assert "missing required option 'pretrained'" in text
    assert "backbone.dtype: expected str, got 16" in text
    assert "teacher: layer 30 outside 0..23" in text


def test_requires_checked_against_teacher_provides(plugin_host, tmp_path):
    text = GOOD + '[[objectives]]\ncomponent = "toy_pose"\n'
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, text))
    assert "objectives.1: objective 'toy_pose' requires pose_enc, which teacher 'toy_teacher'" in str(err.value)
    no_teacher = GOOD.replace('[teacher]\ncomponent = "toy_teacher"\n', "")
    with pytest.raises(RecipeError, match="add a \\[teacher\\] table"):
        load_recipe(write(tmp_path, no_teacher))


def test_overrides_and_extends(plugin_host, tmp_path):
    write(tmp_path, GOOD, "base.toml")
    child = write(tmp_path, 'extends = "base.toml"\nname = "child"\n[backbone]\ndtype = "bfloat16"\n', "child.toml")
    recipe = load_recipe(child, ["objectives.0.weight=0.25", "backbone.freeze=['vision']", "seed=7"])
    assert recipe.name == "child" and recipe.seed == 7
    assert recipe.backbone.config == BackboneCfg(pretrained="some/model", dtype="bfloat16", freeze=["vision"])
    assert recipe.objectives[0].config.weight == 0.25


def test_override_helpers():
    assert parse_value("0.2") == 0.2 and parse_value("[4, 11]") == [4, 11] and parse_value("true") is True
    assert parse_value("runs/x") == "runs/x"
    data, problems = apply_overrides({"a": [{"w": 1}]}, ["a.0.w=2", "a.2.w=1", "noequals", "b.c=3"])
    assert data == {"a": [{"w": 2}], "b": {"c": 3}}
    assert len(problems) == 2 and "a.2" in problems[0] and "key=value" in problems[1]


def test_circular_extends(tmp_path):
    write(tmp_path, 'extends = "b.toml"\n', "a.toml")
    write(tmp_path, 'extends = "a.toml"\n', "b.toml")
    with pytest.raises(RecipeError, match="circular"):
        load_recipe(tmp_path / "a.toml")


@pytest.mark.parametrize("name", sorted(shipped_recipes()))
def test_every_shipped_recipe_validates(name):
    recipe = load_recipe(shipped_recipes()[name], require_training=True)
    assert recipe.backbone is not None and "train" in recipe.data


def test_recipes_are_shipped():
    assert "tiny_synthetic" in shipped_recipes()


def test_show_and_dry_run_print_resolved_recipe(plugin_host, tmp_path, capsys):
    import json
    import tomllib

    from geovr.cli.main import main

    p = write(tmp_path, GOOD)
    assert main(["show", str(p), "--json", 'backbone.dtype="bfloat16"']) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backbone"] == {
        "component": "toy_backbone",
        "distribution": "toy-recipes",
        "pretrained": "some/model",
        "dtype": "bfloat16",
        "freeze": [],
    }
    assert data["teacher"]["layers"] == [4, 11, 17, 23]  # default filled in
    assert main(["show", str(p)]) == 0
    as_toml = tomllib.loads(capsys.readouterr().out)  # the TOML rendering parses back
    assert as_toml["objectives"][0]["weight"] == 0.5 and as_toml["data"]["train"]["component"] == "toy_data"
    assert main(["run", str(p), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# dry run: toy -> runs/toy") and 'component = "toy_trainer"' in out
    no_trainer = write(tmp_path, GOOD.replace('[trainer]\ncomponent = "toy_trainer"\n', ""), "nt.toml")
    assert load_recipe(no_trainer, require_training=True).trainer.component == "accelerate"  # the default
    assert main(["run", str(p), "backbone.bogus=1", "--dry-run"]) == 2


def test_objective_teacher_layers_checked_against_teacher_depth(plugin_host, tmp_path):
    @attrs.define
    class LayeredCfg:
        weight: float = 1.0
        teacher_layers: list[int] | None = None

        def requires(self):
            return frozenset({"features"})

    class P:
        @geovr.hookimpl
        def register_objectives(self, register):
            register("layered", lambda c, x: c, config=LayeredCfg)

    plugin_host.register_object(P(), "layered-plugin")
    text = GOOD + '[[objectives]]\ncomponent = "layered"\nteacher_layers = [4, 24]\n'
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, text))
    assert err.value.problems == [
        "objectives.1.teacher_layers: [24] outside 0..23 (teacher 'toy_teacher' has 24 layers)"
    ]
    assert load_recipe(write(tmp_path, text.replace("[4, 24]", "[4, 23]"))).objectives[1].config.teacher_layers == [
        4,
        23,
    ]


def test_preflight_reports_missing_files_before_building_anything(plugin_host, tmp_path):
    built = []

    @attrs.define
    class FileCfg:
        path: str

        def preflight(self):
            from geovr.recipe.preflight import missing_path

            return missing_path(self.path, "path", kind="file")

    class P:
        @geovr.hookimpl
        def register_datasets(self, register):
            register("file_data", lambda c, x: built.append(c), config=FileCfg)

        @geovr.hookimpl
        def register_backbones(self, register):
            register("counting_backbone", lambda c, x: built.append("backbone"))

    plugin_host.register_object(P(), "files-plugin")
    text = GOOD.replace('component = "toy_backbone"\npretrained = "some/model"', 'component = "counting_backbone"')
    text = text.replace(
        '[data.train]\ncomponent = "toy_data"',
        f'[data.train]\ncomponent = "file_data"\npath = "{tmp_path / "nope.jsonl"}"\n'
        f'[data.eval]\ncomponent = "file_data"\npath = "{tmp_path / "gone.jsonl"}"',
    )
    recipe = load_recipe(write(tmp_path, text))  # validation is static: it passes
    with pytest.raises(RecipeError) as err:
        geovr.build(recipe)
    assert built == [], "nothing may be built when preflight fails"
    assert err.value.problems == [
        f"data.train.path: file not found: {tmp_path / 'nope.jsonl'} (expected path to name an existing file)",
        f"data.eval.path: file not found: {tmp_path / 'gone.jsonl'} (expected path to name an existing file)",
    ]
    (tmp_path / "nope.jsonl").write_text("")
    (tmp_path / "gone.jsonl").write_text("")
    geovr.build(recipe)
    assert built[0] == "backbone" and len(built) == 3


def test_checkpoint_source_rules(tmp_path, monkeypatch):
    from geovr.recipe.preflight import checkpoint_source

    assert checkpoint_source(str(tmp_path), "pretrained") == []
    assert checkpoint_source("./missing_dir", "pretrained") == ["pretrained: checkpoint path not found: ./missing_dir"]
    assert checkpoint_source("weights/model.safetensors", "p")[0].startswith("p: checkpoint path not found")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for offline in (None, "1"):  # the cache is consulted the same way whether or not the hub is offline
        if offline is None:
            monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        else:
            monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        problem = checkpoint_source("org/not-cached-model", "pretrained")
        assert len(problem) == 1 and "is not in the local cache" in problem[0] and "hf download" in problem[0]
