"""The typed wiring: BuildContext fields for the trainer, evaluators and callbacks; a callback that runs the
evaluators says so on its config class (no special case for a component name); hookimpl beside the specs."""

from __future__ import annotations

from typing import ClassVar

import attrs

import geovr
from geovr.protocols import BuildContext
from geovr.recipe import load_recipe
from geovr.testing import registered


def test_build_context_fields_are_typed():
    names = {f.name for f in attrs.fields(BuildContext)}
    assert {"trainer", "evaluators", "callbacks"} <= names and "extra" not in names
    ctx = BuildContext()
    assert ctx.trainer is None and ctx.evaluators == [] and ctx.callbacks == []
    assert BuildContext().evaluators is not ctx.evaluators


def test_hookimpl_is_defined_beside_the_specs():
    import geovr.hookspecs

    assert geovr.hookimpl is geovr.hookspecs.hookimpl
    assert geovr.hookspecs.hookimpl.project_name == geovr.hookspecs.hookspec.project_name == "geovr"


@attrs.define
class RunsEvaluatorsConfig:
    uses_evaluators: ClassVar[bool] = True


@attrs.define
class PlainCallbackConfig:
    pass


class Plugin:
    """A backbone, a trainer that reports what it was given, an evaluator and two callbacks: one whose
    config declares ``uses_evaluators`` (under a name other than ``evaluate``) and one that does not."""

    @geovr.hookimpl
    def register_backbones(self, register):
        register("wiring_backbone", lambda c, x: "backbone")

    @geovr.hookimpl
    def register_trainers(self, register):
        class Trainer:
            def fit(self, context):
                return {"evaluators": len(context.evaluators), "callbacks": len(context.callbacks)}

        register("wiring_trainer", lambda c, x: Trainer())

    @geovr.hookimpl
    def register_evaluators(self, register):
        register("wiring_eval", lambda c, x: object())

    @geovr.hookimpl
    def register_callbacks(self, register):
        register("mid_run_scores", lambda c, x: object(), config=RunsEvaluatorsConfig)
        register("plain", lambda c, x: object(), config=PlainCallbackConfig)


def _recipe(tmp_path, callback: str):
    path = tmp_path / f"{callback}.toml"
    path.write_text(
        f'output_dir = "{tmp_path / "run"}"\n[backbone]\ncomponent = "wiring_backbone"\n'
        f'[trainer]\ncomponent = "wiring_trainer"\n[[evaluators]]\ncomponent = "wiring_eval"\n'
        f'[[callbacks]]\ncomponent = "{callback}"\n'
    )
    return load_recipe(path)


def test_evaluators_are_built_for_a_callback_that_declares_it(tmp_path):
    from geovr.train.runner import train, uses_evaluators

    with registered(Plugin(), "wiring-plugin"):
        declared, plain = _recipe(tmp_path, "mid_run_scores"), _recipe(tmp_path, "plain")
        assert uses_evaluators(declared) and not uses_evaluators(plain)
        assert train(declared) == {"evaluators": 1, "callbacks": 1}
        assert train(plain) == {"evaluators": 0, "callbacks": 1}  # evaluators are for `geovr eval` only


def test_the_evaluate_callback_declares_it():
    from geovr.eval.configs import EvaluateCallbackConfig

    assert EvaluateCallbackConfig.uses_evaluators is True
    assert "uses_evaluators" not in {f.name for f in attrs.fields(EvaluateCallbackConfig)}  # not a recipe option
