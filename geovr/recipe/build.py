"""Build the components a validated recipe selects, in order, into a :class:`BuildContext`."""

from __future__ import annotations

from geovr.protocols import BuildContext
from geovr.recipe.schema import Recipe

STAGES = ("backbone", "teacher", "metric_teacher", "objectives", "data", "trainer", "evaluators", "callbacks")


def build(
    recipe: Recipe, *, device: str = "cpu", stages=STAGES, context: BuildContext | None = None, progress=None
) -> BuildContext:
    """Build the selected components; each factory sees what was built before it.

    First every selected component's ``preflight()`` (data files, checkpoint paths) runs; all problems
    are raised together as a :class:`RecipeError` before anything is loaded.

    ``stages`` limits what is built (e.g. ``("backbone",)`` for evaluation of a backbone only).
    ``progress`` is an optional callable ``(label)`` told before each build (for CLI feedback).
    """
    from geovr.errors import RecipeError
    from geovr.recipe.preflight import run_preflight

    problems = run_preflight(c for c in recipe.components() if _stage_of(recipe, c) in stages)
    if problems:
        raise RecipeError(problems, source=f"{recipe.source or recipe.name} (nothing was built)")
    ctx = context or BuildContext(recipe=recipe, device=device, output_dir=recipe.output_dir, seed=recipe.seed)

    def note(label: str) -> None:
        if progress is not None:
            progress(label)

    for key in ("backbone", "teacher", "metric_teacher"):
        choice = getattr(recipe, key)
        if key in stages and choice is not None:
            note(f"{key} {choice.component}")
            setattr(ctx, key, _create(choice, ctx))
    if "objectives" in stages:
        for choice in recipe.objectives:
            note(f"objective {choice.component}")
            ctx.objectives.append(_create(choice, ctx))
    if "data" in stages:
        for split, choice in recipe.data.items():
            note(f"data.{split} {choice.component}")
            ctx.datasets[split] = _create(choice, ctx)
    if "trainer" in stages and recipe.trainer is not None:
        note(f"trainer {recipe.trainer.component}")
        ctx.trainer = _create(recipe.trainer, ctx)
    if "evaluators" in stages:
        ctx.evaluators = [_create(c, ctx) for c in recipe.evaluators]
    if "callbacks" in stages:
        ctx.callbacks = [_create(c, ctx) for c in recipe.callbacks]
    return ctx


def _create(choice, ctx: BuildContext):
    """Build one recipe component; a factory that raises becomes a :class:`geovr.errors.GeovrError` naming
    the recipe place, the component, its plugin and its distribution (see ``ComponentSpec.create``)."""
    spec = choice.spec
    if spec is None or not hasattr(spec, "create"):
        return choice.build(ctx)
    return spec.create(choice.config, ctx, where=choice.where)


def _stage_of(recipe: Recipe, choice) -> str:
    """The build stage a recipe component belongs to."""
    if choice.where.startswith("data."):
        return "data"
    return choice.where.split(".", 1)[0]
