"""Finite-number checks for attrs option classes (torch-free).

TOML accepts ``inf`` and ``nan`` as floats, and a learning rate or a loss weight of ``nan`` would train
silently into non-finite weights; config ``check()`` methods report such options with
:func:`nonfinite_options`.
"""

from __future__ import annotations

import math

import attrs


def _bad(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_bad(v) for v in value)
    return False


def nonfinite_options(config) -> list[str]:
    """``"KEY must be a finite number, got inf"`` for every float (or list of floats) option of the attrs
    instance ``config`` that holds ``inf`` or ``nan``."""
    return [
        f"{f.name} must be a finite number, got {getattr(config, f.name)!r}"
        for f in attrs.fields(type(config))
        if _bad(getattr(config, f.name))
    ]
