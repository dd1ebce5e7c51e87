"""Chat formatting and tokenization of a :class:`~geovr.protocols.Batch` for LLaVA-OneVision.

Each sample becomes one user turn holding the video followed by the question text, used verbatim
(evaluators pass the full protocol prompt of :mod:`geovr.eval.prompts` there), with the
multiple-choice options appended one per line when the batch carries them; formatted by the
processor's chat template. The answer is the assistant turn. A sample with ``Batch.conversations``
turns becomes that multi-turn chat (the video in the first user turn). Labels are ``-100`` everywhere
except the tokens of every assistant turn (the text the template emits after each generation prompt:
the answer and its end-of-turn marker).
"""

from __future__ import annotations

import torch

IGNORE = -100


def messages(
    question: str, options: list[str] | None, system_prompt: str | None, answer: str | None = None
) -> list[dict]:
    """HF chat messages (structured content) for one sample; the answer turn only when given."""
    text = "\n".join([question, *options]) if options else question
    out = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] if system_prompt else []
    out.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]})
    if answer is not None:
        out.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return out


def conversation_messages(turns: list[dict], system_prompt: str | None) -> list[dict]:
    """HF chat messages of ``[{"role", "text"}, ...]`` turns, the video in the first user turn."""
    out = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] if system_prompt else []
    for n, t in enumerate(turns):
        content = [{"type": "text", "text": t["text"]}]
        out.append({"role": t["role"], "content": [{"type": "video"}, *content] if n == 0 else content})
    return out


def _later_turns(processor, turns: list[dict], system_prompt: str | None, prompt: str) -> tuple[list[int], list[int]]:
    """``(ids, labels)`` of turns 1.. of a conversation after the rendered first prompt ``prompt``: each
    assistant turn labelled (its tokens and end-of-turn), each later user turn and generation prompt masked."""
    tok = processor.tokenizer
    ids, labels, done = [], [], prompt
    for k in range(1, len(turns)):
        msgs = conversation_messages(turns[: k + 1], system_prompt)
        assistant = turns[k]["role"] == "assistant"
        text = processor.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=not assistant and k + 1 < len(turns)
        )
        tail = text[len(done) :] if text.startswith(done) else turns[k]["text"] + (tok.eos_token or "")
        piece = tok(tail, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if assistant else [IGNORE] * len(piece)
        done = text
    return ids, labels


def _answer_ids(processor, prompt: str, msgs: list[dict], answer: str) -> list[int]:
    """Token ids the template emits for the assistant turn after ``prompt`` (answer + end of turn)."""
    full = processor.apply_chat_template(msgs, tokenize=False)
    tail = full[len(prompt) :] if full.startswith(prompt) else answer + (processor.tokenizer.eos_token or "")
    return processor.tokenizer(tail, add_special_tokens=False)["input_ids"]


def encode(processor, batch, *, system_prompt: str | None = None, with_answers: bool = True) -> dict:
    """Batch → HF inputs of ``LlavaOnevisionForConditionalGeneration``.

    Returns ``input_ids`` ``[B,T]``, ``attention_mask`` ``[B,T]``, ``pixel_values_videos``
    ``[B,S,3,H',W']`` (the processor's resize/normalisation of ``batch.frames`` ``[B,S,3,H,W]`` in [0,1])
    and, with answers, ``labels`` ``[B,T]``. Rows are right-padded with answers (training) and
    left-padded without (generation).
    """
    frames = batch.frames.detach().float().cpu().clamp(0, 1)
    prompts, convs = [], []
    turns_of = batch.conversations or [None] * batch.batch_size
    for b in range(batch.batch_size):
        opts = batch.options[b] if b < len(batch.options) else None
        turns = turns_of[b]
        if turns and not with_answers:  # generation: every turn up to the last user turn
            turns = turns[:-1] if turns[-1]["role"] == "assistant" else turns
            msgs = conversation_messages(turns, system_prompt)
        elif turns:
            msgs = conversation_messages(turns[:1], system_prompt)
        else:
            msgs = messages(batch.questions[b], opts, system_prompt)
        convs.append((opts, msgs))
        prompts.append(processor.apply_chat_template(convs[-1][1], add_generation_prompt=True, tokenize=False))
    enc = processor(text=prompts, videos=list(frames), return_tensors="pt", padding=True, do_rescale=False)
    rows, labels = [], []
    for b in range(batch.batch_size):
        ids = enc["input_ids"][b][enc["attention_mask"][b].bool()].tolist()
        lab = [IGNORE] * len(ids)
        if with_answers and turns_of[b]:
            more, more_lab = _later_turns(processor, turns_of[b], system_prompt, prompts[b])
            ids, lab = ids + more, lab + more_lab
        elif with_answers:
            opts, msgs = convs[b]
            answer = batch.answers[b]
            ans = _answer_ids(
                processor, prompts[b], messages(batch.questions[b], opts, system_prompt, answer=answer), answer
            )
            ids, lab = ids + ans, lab + ans
        rows.append(ids)
        labels.append(lab)
    pad = processor.tokenizer.pad_token_id
    pad = pad if pad is not None else processor.tokenizer.eos_token_id
    T = max(len(r) for r in rows)
    B = len(rows)
    input_ids = torch.full((B, T), pad, dtype=torch.long)
    attention = torch.zeros((B, T), dtype=torch.long)
    label_t = torch.full((B, T), IGNORE, dtype=torch.long)
    for b, (ids, lab) in enumerate(zip(rows, labels, strict=False)):
        sl = slice(0, len(ids)) if with_answers else slice(T - len(ids), T)
        input_ids[b, sl] = torch.tensor(ids)
        attention[b, sl] = 1
        label_t[b, sl] = torch.tensor(lab)
    out = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    out.update(input_ids=input_ids, attention_mask=attention)
    if with_answers:
        out["labels"] = label_t
    return out
