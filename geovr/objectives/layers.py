"""Mapping teacher layers onto student (LLM) layers (torch-free).

Indices follow HF ``hidden_states`` indexing on the student side: ``0`` is the embedding output and
``i`` the output of decoder layer ``i`` (``1..student_depth``). Teacher layers are 0-based block
indices (``0..teacher_depth-1``).
"""

from __future__ import annotations

from collections.abc import Sequence


def map_teacher_layers(teacher_layers: Sequence[int], teacher_depth: int, student_depth: int) -> list[int]:
    """Student hidden-state index for each teacher layer: ``round((i + 1) / teacher_depth * student_depth)``.

    Teacher block ``i`` (0-based) sits at relative depth ``(i + 1) / teacher_depth``; the student layer at
    the same relative depth is taken. Rounding is Python's :func:`round` (round half to even, as in the
    reference method), e.g. VGGT ``[4, 11, 17, 23]`` of 24 blocks onto a 28-layer LLM gives
    ``[6, 14, 21, 28]``; ``2.5`` rounds to ``2`` and ``3.5`` to ``4``. Results are clamped to
    ``1..student_depth`` so a mapped layer is always a decoder layer.

    Raises ``ValueError`` for a non-positive depth or a teacher layer outside ``0..teacher_depth-1``.
    """
    if teacher_depth <= 0 or student_depth <= 0:
        raise ValueError(f"depths must be positive, got teacher_depth={teacher_depth}, student_depth={student_depth}")
    out = []
    for i in teacher_layers:
        if not 0 <= int(i) < teacher_depth:
            raise ValueError(f"teacher layer {i} outside 0..{teacher_depth - 1}")
        out.append(min(student_depth, max(1, round((int(i) + 1) / teacher_depth * student_depth))))
    return out


def default_layers(count: int, student_depth: int) -> list[int]:
    """``count`` evenly spaced student layers ending at the last one (used without a teacher layer list):
    the mapping of teacher layers ``k·n/count − 1`` of an ``n``-deep teacher, i.e.
    ``round((k + 1) / count * student_depth)`` for ``k = 0..count-1``."""
    return [min(student_depth, max(1, round((k + 1) / count * student_depth))) for k in range(count)]
