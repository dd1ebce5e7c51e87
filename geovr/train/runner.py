"""Build a validated recipe and train it: what ``geovr run`` does after validation.

Seeding happens *before* building, so randomly initialised parts (new heads, geometry tokens, tiny test
models) are the same in a resumed run and in :func:`geovr.train.export.export`, which rebuilds the
student the same way. Errors a builder raises for a user mistake (a missing data file, a layer out of
range) surface as :class:`geovr.errors.GeovrError` naming the component, before any training step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geovr.errors import GeovrError, UsageError

if TYPE_CHECKING:
    from geovr.recipe.schema import Recipe


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


def check_output_dir(path) -> None:
    """Raise :class:`UsageError` unless ``path`` is (or can be created as) a writable directory; also
    refuse a directory another live run holds (:mod:`geovr.train.runlock`). Cheap: runs before any model
    is built."""
    import os
    import tempfile
    from pathlib import Path

    from geovr.train.runlock import check_free

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"output_dir {p} is a file, not a directory; choose another output_dir")
    existing = p if p.exists() else next((a for a in p.parents if a.exists()), Path("."))
    if not existing.is_dir():
        raise UsageError(f"output_dir {p} is not writable: {existing} is a file, not a directory")
    try:  # a real write (os.access says yes to root even on read-only file systems); leaves nothing behind
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".geovr-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"output_dir {p} is not writable ({reason}: {existing}); choose another output_dir or fix its permissions"
        ) from exc
    rank = next((os.environ[k] for k in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK") if os.environ.get(k)), "0")
    if rank == "0":  # the other processes of a launch find the lock of their own main process
        check_free(p)


def uses_evaluators(recipe: Recipe) -> bool:
    """Whether a ``[[callbacks]]`` entry runs the recipe's evaluators during training: its config class
    declares ``uses_evaluators = True`` (a class variable, e.g. ``uses_evaluators: ClassVar[bool] = True``)."""
    return any(getattr(c.config, "uses_evaluators", False) is True for c in recipe.callbacks)


def train(recipe, *, device: str = "cpu", progress=None) -> dict:
    """Seed, build the components of ``recipe`` and run its trainer; returns the final metrics.

    ``[[evaluators]]`` are built only when a listed callback runs them during training (its config class
    declares ``uses_evaluators = True``, as the ``evaluate`` callback's does); otherwise they are for
    ``geovr eval`` and their data need not exist yet.
    """
    from geovr.recipe.build import STAGES

    check_output_dir(recipe.output_dir)
    stages = STAGES if uses_evaluators(recipe) else tuple(s for s in STAGES if s != "evaluators")
    ctx = build_seeded(recipe, device=device, stages=stages, progress=progress)
    trainer = ctx.trainer
    if trainer is None:
        raise GeovrError("the recipe has no [trainer] (validate it with require_training=True)")
    return trainer.fit(ctx)
