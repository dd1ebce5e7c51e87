"""VSI-Bench answer parsing and per-question scores under the two published protocols.

Protocols
---------
``"lmms-eval"`` (lmms-eval 0.7.x, task ``vsibench``):
    multiple choice: the first space-separated token of the response with trailing ``"."`` removed
    (then whitespace-stripped), compared with the ground-truth letter case-insensitively;
    numerical: the first number in the response, either digits (``-?\\d+(\\.\\d+)?``) or a run of
    English number words (``"three"``, ``"twenty-one"``, ``"two hundred and five"``), whichever
    starts first; MRA with ``<=``; an unparsable answer scores 0.
``"geovr"`` (the method's own scorer, ``metric_result.py`` of the released code):
    multiple choice: the first character of the whitespace-stripped response equals the
    whitespace-stripped ground truth (case-sensitive); numerical: ``float()`` of the stripped response;
    MRA over :data:`GEOVR_THRESHOLDS` with strict ``<``; an unparsable answer scores 0 (so does an
    empty multiple-choice answer, on which the released script would stop with an ``IndexError``).

The two protocols differ in one more place that decides real scores: lmms-eval builds its thresholds
with ``np.linspace(0.5, 0.95, 10)``, whose 9th value is ``0.8999999999999999`` (so ``1 - θ`` is
``0.10000000000000009``), while the released scorer rounds ``0.5 + 0.05 i`` to two decimals, giving
exactly ``0.9`` (so ``1 - θ`` is ``0.09999999999999998``). A relative error of exactly 0.1 (9 against
10) therefore passes θ = 0.9 under lmms-eval (0.9) and fails it under the geovr protocol (0.8).

Every function here is pure Python + numpy (no torch).
"""

from __future__ import annotations

import math
import re
from typing import Literal

import numpy as np

Protocol = Literal["lmms-eval", "geovr"]
PROTOCOLS: tuple[str, ...] = ("lmms-eval", "geovr")

#: MRA confidence thresholds θ = 0.50, 0.55, …, 0.95 (computed as lmms-eval does, so the floating-point
#: values of ``1 - θ`` are identical: e.g. ``1 - 0.9`` is ``0.10000000000000009`` here).
THRESHOLDS = np.linspace(0.5, 0.95, 10)

#: The same θ as the released scorer builds them: ``round(0.5 + 0.05 i, 2)`` for i = 0…9 (Python floats,
#: compared as ``rel < 1.0 - θ``); differs from :data:`THRESHOLDS` at θ = 0.9 (see the module docstring).
GEOVR_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + i * 0.05, 2) for i in range(10))

_DIGITS = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z]+")
_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000}


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` or raise ``ValueError`` naming the valid ones."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return protocol


def mean_relative_accuracy(pred: float | None, target: float | None, *, protocol: Protocol) -> float:
    """Mean over θ ∈ {0.50, …, 0.95} of ``|pred − target| / target < 1 − θ`` (``<=`` for lmms-eval).

    lmms-eval uses :data:`THRESHOLDS`, the geovr protocol :data:`GEOVR_THRESHOLDS` (9 against 10: 0.9
    vs 0.8). Returns a value in [0, 1]. ``pred`` or ``target`` ``None``/NaN → 0. A zero target (never
    present in VSI-Bench) scores 1 when ``pred == 0`` and 0 otherwise instead of dividing by zero.
    """
    check_protocol(protocol)
    if pred is None or target is None:
        return 0.0
    pred, target = float(pred), float(target)
    if math.isnan(pred) or math.isnan(target):
        return 0.0
    if target == 0.0:
        return 1.0 if pred == 0.0 else 0.0
    rel = abs(pred - target) / target
    if protocol == "lmms-eval":
        return float((rel <= 1 - THRESHOLDS).mean())
    return sum(1 for theta in GEOVR_THRESHOLDS if rel < 1.0 - theta) / 10.0


def _words_value(words: list[str]) -> float:
    """Value of a run of number words (``["three", "hundred", "twenty", "one"]`` → 321)."""
    total, current = 0, 0
    for w in words:
        if w == "hundred":
            current = max(current, 1) * 100
        elif w == "thousand":
            total += max(current, 1) * 1000
            current = 0
        else:
            current += _UNITS[w]
    return float(total + current)


def extract_number(text: str | None) -> float | None:
    """The first number in ``text``: digits or English number words, whichever starts first.

    ``"There are 3 chairs"`` → 3.0, ``"Three."`` → 3.0, ``"twenty-one"`` → 21.0, ``"one apple, room 2"``
    → 1.0, ``"about 2.5 m"`` → 2.5, ``"none"`` → ``None``. A word run continues over further number words
    and the word ``"and"`` and stops at the first other word (digits/punctuation do not stop it).
    """
    if text is None:
        return None
    s = str(text).strip().lower()
    if not s:
        return None
    digits = _DIGITS.search(s)
    start, words = None, []
    for m in _WORD.finditer(s):
        w = m.group(0)
        is_number = w in _UNITS or w in _SCALES
        if start is None:
            if is_number:
                start, words = m.start(), [w]
        elif is_number:
            words.append(w)
        elif w != "and":
            break
    if digits is not None and (start is None or digits.start() < start):
        return float(digits.group(0))
    if start is None:
        return None
    return _words_value(words)


def to_float(text) -> float | None:
    """``float(text)`` or ``None`` when it does not parse (whitespace around a number is fine)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def parse_choice(response: str, *, protocol: Protocol) -> str:
    """The option letter a response picks (``""`` when empty); see the module docstring."""
    check_protocol(protocol)
    response = response or ""
    if protocol == "lmms-eval":
        return response.split(" ")[0].rstrip(".").strip()
    return response.strip()[:1]


def parse_number(response: str, *, protocol: Protocol) -> float | None:
    """The numerical answer of a response (``None`` when unparsable); see the module docstring."""
    check_protocol(protocol)
    if protocol == "lmms-eval":
        return extract_number(response)
    return to_float((response or "").strip())


def choice_correct(choice: str, target: str, *, protocol: Protocol) -> float:
    """1.0 when the parsed ``choice`` matches the ground-truth letter ``target``, else 0.0."""
    check_protocol(protocol)
    target = str(target)
    if protocol == "lmms-eval":
        return 1.0 if choice.lower() == target.lower() else 0.0
    return 1.0 if choice != "" and choice == target.strip() else 0.0


def score_answer(response: str, target, *, multiple_choice: bool, protocol: Protocol) -> tuple[object, float]:
    """Parse one raw model ``response`` and score it against ``target`` (ground truth).

    Returns ``(parsed, score)``: ``parsed`` is the option letter (str) or the number (float or ``None``);
    ``score`` ∈ [0, 1] (accuracy for multiple choice, MRA for numerical answers).
    """
    if multiple_choice:
        choice = parse_choice(response, protocol=protocol)
        return choice, choice_correct(choice, target, protocol=protocol)
    value = parse_number(response, protocol=protocol)
    return value, mean_relative_accuracy(value, to_float(target), protocol=protocol)
