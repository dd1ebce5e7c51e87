"""The rules between components (geovr.rules) and that recipe validation, the pre-training check and the
objectives' layer resolution report a broken rule in the same words."""

from __future__ import annotations

import attrs
import pytest

import geovr
from geovr.errors import RecipeError
from geovr.recipe import load_recipe
from geovr.rules import (
    layers_outside,
    missing_outputs,
    requires_problem,
    student_layers_problem,
    teacher_layers_problem,
)


def test_missing_outputs_and_layer_ranges():
    assert missing_outputs({"depth", "pose_enc"}, {"depth", "features"}) == ["pose_enc"]
    assert missing_outputs(["depth"], ["depth"]) == []
    assert layers_outside([0, 3, 4, -1, "2", True], 0, 3) == [4, -1, "2", True]
    assert teacher_layers_problem([0, 23], 24) is None
    assert teacher_layers_problem([0, 24], 24, teacher="vggt") == "[24] outside 0..23 (teacher 'vggt' has 24 layers)"
    # student layers are hidden-state indices: 0 (embeddings) .. depth (the last decoder layer)
    assert student_layers_problem([0, 4], 4) is None
    assert student_layers_problem([5], 4) == "[5] outside 0..4 (hidden states of the 4-layer backbone)"


def test_requires_problem_words():
    assert requires_problem("depth", {"depth"}, {"depth", "features"}, teacher="t") is None
    assert requires_problem("depth", {"depth"}, set(), teacher=None, has_teacher=False) == (
        "objective 'depth' needs a teacher providing depth; add a [teacher] table"
    )
    assert requires_problem("scale", {"metric_depth"}, {"depth"}, teacher="vggt") == (
        "objective 'scale' requires metric_depth, which teacher 'vggt' or a [metric_teacher] does not provide "
        "(it provides: depth)"
    )


def test_the_three_callers_share_the_rules(tmp_path):
    """One broken teacher-layer rule, three places: recipe validation, the check before training and the
    objective's own layer resolution all describe it with geovr.rules' words."""
    from geovr.objectives.configs import FeatureDistillConfig
    from geovr.objectives.objectives import build_feature_distill
    from geovr.testing.tiny import tiny_context
    from geovr.train.assembly import objective_problems

    words = teacher_layers_problem([9], 3)
    ctx = tiny_context(output_dir=str(tmp_path), n=2, objectives=("feature",))
    ctx.objectives[0].teacher_layers = (9,)
    assert objective_problems(ctx) == [f"objectives.0.teacher_layers: {words}"]
    with pytest.raises(RecipeError) as err:
        build_feature_distill(FeatureDistillConfig(teacher_layers=[9], hidden_dim=4), ctx)
    assert err.value.problems == [f"objective 'feature_distill': teacher_layers {words}"]

    @attrs.define
    class TeacherCfg:
        num_layers: int = 3

        def provides(self):
            return frozenset({"features"})

    @attrs.define
    class DistillCfg:
        teacher_layers: list[int] | None = None

        def requires(self):
            return frozenset({"features"})

    class P:
        @geovr.hookimpl
        def register_backbones(self, register):
            register("rules_backbone", lambda c, x: None)

        @geovr.hookimpl
        def register_teachers(self, register):
            register("rules_teacher", lambda c, x: None, config=TeacherCfg)

        @geovr.hookimpl
        def register_objectives(self, register):
            register("rules_distill", lambda c, x: None, config=DistillCfg)

    from geovr.testing import registered

    path = tmp_path / "r.toml"
    path.write_text(
        '[backbone]\ncomponent = "rules_backbone"\n[teacher]\ncomponent = "rules_teacher"\n'
        '[[objectives]]\ncomponent = "rules_distill"\nteacher_layers = [9]\n'
    )
    with registered(P(), "rules-plugin"):
        with pytest.raises(RecipeError) as err:
            load_recipe(path)
    assert err.value.problems == [
        f"objectives.0.teacher_layers: {teacher_layers_problem([9], 3, teacher='rules_teacher')}"
    ]
