"""Build a validated recipe and train it: what ``geovr run`` does after validation.

Seeding happens *before* building, so randomly initialised parts (new heads, geometry tokens, tiny test
models) are the same in a resumed run and in :func:`geovr.train.export.export`, which rebuilds the
student the same way. Errors a builder raises for a user mistake (a missing data file, a layer out of
range) surface as :class:`geovr.errors.GeovrError` naming the component, before any training step.
"""

from __future__ import annotations

from geovr.errors import GeovrError


def build_seeded(recipe, *, device: str = "cpu", stages=None, progress=None):
    """``accelerate.utils.set_seed(recipe.seed)`` then :func:`geovr.recipe.build` (all stages by default).

    Builder exceptions that are not already geovr errors (``FileNotFoundError``, ``ValueError``,
    ``IndexError``, ``KeyError``) are re-raised as :class:`GeovrError` naming the stage being built.
    """
    from accelerate.utils import set_seed

    from geovr.recipe import build
    from geovr.recipe.build import STAGES

    set_seed(recipe.seed)
    current = {"label": "components"}

    def note(label):
        current["label"] = label
        if progress is not None:
            progress(label)

    try:
        return build(recipe, device=device, stages=stages or STAGES, progress=note)
    except GeovrError:
        raise
    except (OSError, ValueError, IndexError, KeyError) as exc:
        raise GeovrError(f"building {current['label']} failed before training: {type(exc).__name__}: {exc}") from exc


def train(recipe, *, device: str = "cpu", progress=None) -> dict:
    """Seed, build the components of ``recipe`` and run its trainer; returns the final metrics.

    ``[[evaluators]]`` are built only when a listed callback runs them during training (the
    ``evaluate`` callback); otherwise they are for ``geovr eval`` and their data need not exist yet.
    """
    from geovr.recipe.build import STAGES

    uses_evaluators = any(c.component == "evaluate" for c in recipe.callbacks)
    stages = STAGES if uses_evaluators else tuple(s for s in STAGES if s != "evaluators")
    ctx = build_seeded(recipe, device=device, stages=stages, progress=progress)
    trainer = ctx.extra.get("trainer")
    if trainer is None:
        raise GeovrError("the recipe has no [trainer] (validate it with require_training=True)")
    return trainer.fit(ctx)
