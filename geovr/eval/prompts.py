"""The exact VSI-Bench prompt text of both protocols (frozen by ``tests/snapshots/``).

``lmms-eval`` (lmms-eval 0.7.x ``vsibench``, default model kwargs)::

    These are frames of a video.\\n{question}\\nPlease answer the question using a single word or phrase.
    These are frames of a video.\\n{question}\\nOptions:\\n{options, one per line}\\n
        Answer with the option's letter from the given choices directly.

``geovr`` (the method's own evaluator; no pre-prompt, no "Options:" header)::

    {question}\\nPlease answer the question ONLY using a single Arabic numeral.
    {question}\\n{options, one per line}\\nAnswer with ONLY the option's letter directly.

(the lmms-eval multiple-choice line is wrapped here for width; the prompt has just the one ``\\n``
after the last option). The video is passed to the backbone separately (frames before the text in
the chat turn).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from geovr.eval.metrics import Protocol, check_protocol

LMMS_PRE_PROMPT = "These are frames of a video."
LMMS_NUMERICAL_POST_PROMPT = "Please answer the question using a single word or phrase."
LMMS_CHOICE_POST_PROMPT = "Answer with the option's letter from the given choices directly."
GEOVR_NUMERICAL_SUFFIX = "Please answer the question ONLY using a single Arabic numeral."
GEOVR_CHOICE_SUFFIX = "Answer with ONLY the option's letter directly."


def build_prompt(question: str, options: Sequence[str] | None, *, protocol: Protocol) -> str:
    """The text turn for one question. ``options`` (``["A. chair", "B. table"]``) or ``None`` for a
    numerical question."""
    check_protocol(protocol)
    options = list(options) if options is not None else None
    if protocol == "lmms-eval":
        if options is None:
            return "\n".join([LMMS_PRE_PROMPT, question, LMMS_NUMERICAL_POST_PROMPT])
        return "\n".join([LMMS_PRE_PROMPT, question, "Options:\n" + "\n".join(options), LMMS_CHOICE_POST_PROMPT])
    if options is None:
        return question + "\n" + GEOVR_NUMERICAL_SUFFIX
    return question + "\n" + "\n".join(options) + "\n" + GEOVR_CHOICE_SUFFIX


def doc_prompt(doc: Mapping, *, protocol: Protocol) -> str:
    """:func:`build_prompt` for a VSI-format record; multiple choice is decided by the question type."""
    from geovr.eval.vsibench import is_multiple_choice

    options = doc.get("options") if is_multiple_choice(doc["question_type"]) else None
    return build_prompt(doc["question"], options, protocol=protocol)
