"""The rules that hold between components, in one place (torch-free).

* an objective's ``requires`` (teacher outputs it reads) ⊆ what the teacher and the metric teacher
  ``provide``;
* teacher layer indices are blocks ``0..depth-1`` of the teacher;
* student layer indices are HF ``hidden_states`` indices ``0..depth`` of the backbone (0 = embeddings).

Recipe validation applies them to the components' configs (:mod:`geovr.recipe.validate`), the trainer to
the built components before its first step (:func:`geovr.train.assembly.check_before_training`) and the
objectives when they resolve their layers (:func:`geovr.objectives.objectives.resolve_layers`). Each rule
returns the problem's description (``None`` when the rule holds); the caller prefixes the place it
knows (``objectives.1``, ``objective 'depth'``), so every caller reports a broken rule in the same words.
"""

from __future__ import annotations

from collections.abc import Iterable


def missing_outputs(requires: Iterable[str], provides: Iterable[str]) -> list[str]:
    """The required teacher outputs nobody provides, sorted."""
    return sorted(set(requires) - set(provides))


def layers_outside(layers: Iterable[object], first: int, last: int) -> list[object]:
    """The entries of ``layers`` that are not integers in ``first..last`` (both included)."""
    return [x for x in layers if isinstance(x, bool) or not isinstance(x, int) or not first <= x <= last]


def requires_problem(
    objective: str, requires: Iterable[str], provides: Iterable[str], *, teacher: str | None, has_teacher: bool = True
) -> str | None:
    """``objective 'x' requires depth, which teacher 't' does not provide (it provides: features)``, or (no
    teacher at all) ``objective 'x' needs a teacher providing depth; add a [teacher] table``.

    ``provides``: the union of the teacher's and the metric teacher's outputs; ``teacher``: the teacher's
    component name (``None`` when unknown)."""
    missing = missing_outputs(requires, provides)
    if not missing:
        return None
    if not has_teacher:
        return f"objective {objective!r} needs a teacher providing {', '.join(missing)}; add a [teacher] table"
    extra = " or a [metric_teacher]" if "metric_depth" in missing else ""
    who = f"teacher {teacher!r}" if teacher else "the teacher"
    return (
        f"objective {objective!r} requires {', '.join(missing)}, which {who}{extra} does not provide "
        f"(it provides: {', '.join(sorted(set(provides))) or 'nothing'})"
    )


def teacher_layers_problem(layers: Iterable[object], depth: int, *, teacher: str | None = None) -> str | None:
    """``[24] outside 0..23 (teacher 'vggt' has 24 layers)`` for teacher layers beyond a ``depth``-block teacher."""
    bad = layers_outside(layers, 0, depth - 1)
    if not bad:
        return None
    who = f"teacher {teacher!r}" if teacher else "the teacher"
    return f"{bad} outside 0..{depth - 1} ({who} has {depth} layers)"


def student_layers_problem(layers: Iterable[object], depth: int) -> str | None:
    """``[9] outside 0..4 (hidden states of the 4-layer backbone)`` for student layers beyond the backbone."""
    bad = layers_outside(layers, 0, depth)
    if not bad:
        return None
    return f"{bad} outside 0..{depth} (hidden states of the {depth}-layer backbone)"


__all__ = ["layers_outside", "missing_outputs", "requires_problem", "student_layers_problem", "teacher_layers_problem"]
