"""The question-answering evaluation loop shared by ``vsibench`` and ``synthetic_qa``.

For each not-yet-answered doc: load its frames, build the protocol's prompt, call
``backbone.generate(batch, **generation_kwargs)``, parse and score the answer, append a row to
``predictions.jsonl``. Then score every answered doc with :func:`geovr.eval.vsibench.aggregate` and
write the reports (:mod:`geovr.eval.report`).

Resuming: a doc whose ``id`` already has a row with the same prompt is skipped; ``settings.json`` guards
against mixing answers made with other frames/decoding/data settings. Sharding: with several
processes (``accelerate launch``) the docs are split through accelerate's
``PartialState().split_between_processes`` (the same partition on every process, whatever each has
already answered); each process appends to ``predictions.rank<k>.jsonl`` and the main process merges
them into ``predictions.jsonl`` after a barrier.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from geovr.data.jsonl import iter_jsonl
from geovr.errors import DataError
from geovr.eval.metrics import Protocol, check_protocol
from geovr.eval.prompts import doc_prompt
from geovr.eval.report import append_jsonl, write_results
from geovr.eval.vsibench import aggregate, score_question, task_counts, task_of

#: ``load_frames(doc) -> (frames [S,3,H,W] float32 in [0,1], frame_indices [S] int64)``
FrameLoader = Callable[[Mapping], tuple[Any, Any]]
PREDICTIONS = "predictions.jsonl"
DEFAULT_MAX_NEW_TOKENS = 16


def generation_kwargs(
    protocol: Protocol,
    *,
    max_new_tokens: int | None = None,
    temperature: float = 0.7,
    top_p: float = 0.8,
    top_k: int = 20,
) -> dict:
    """Decoding options of a protocol: greedy for ``lmms-eval``; sampling for ``geovr``."""
    check_protocol(protocol)
    n = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else int(max_new_tokens)
    if protocol == "lmms-eval":
        return {"max_new_tokens": n, "do_sample": False}
    return {
        "max_new_tokens": n,
        "do_sample": True,
        "temperature": float(temperature),
        "top_p": float(top_p),
        "top_k": int(top_k),
    }


def batch_seed(seed: int, first_id: str) -> int:
    """Seed of a generation batch: stable across resumes and shards (depends on its first doc id)."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(first_id).encode())) % (2**31)


def _answered(out: Path, prompts: Mapping[str, str]) -> dict[str, dict]:
    """Latest row per id (from the merged file and any leftover per-rank files) whose prompt matches."""
    rows: dict[str, dict] = {}
    for path in [out / PREDICTIONS, *sorted(out.glob("predictions.rank*.jsonl"))]:
        if not path.is_file():
            continue
        for where, row in iter_jsonl(path, truncated_tail_ok=True):
            if not isinstance(row.get("response"), str):
                raise DataError(
                    f"{where}: the prediction 'response' must be a string, got "
                    f"{type(row.get('response')).__name__} {row.get('response')!r}"
                )
            rid = str(row.get("id"))
            if prompts.get(rid) == row.get("prompt"):
                rows[rid] = row
    return rows


def _check_settings(out: Path, settings: dict, *, write: bool) -> None:
    """Refuse to mix answers made with other settings (frames, decoding, data) into one directory.

    ``settings.json`` records them; an output directory holding answers from different settings is a
    :class:`UsageError` naming the differing keys.
    """
    import json

    from geovr.errors import UsageError

    path = out / "settings.json"
    current = json.loads(json.dumps(settings))  # normalised as stored
    files = [out / PREDICTIONS, *out.glob("predictions.rank*.jsonl")]
    has_answers = any(p.is_file() and p.stat().st_size for p in files)
    if path.is_file() and has_answers:
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            before = None
        if before != current:
            keys = sorted(k for k in set(current) | set(before or {}) if (before or {}).get(k) != current.get(k))
            raise UsageError(
                f"{out} holds answers made with other settings ({', '.join(keys)} differ; see "
                f"{path}); evaluate into another directory (output_subdir / --output) or delete it"
            )
    if write:
        path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _batches(todo: Sequence[Mapping], size: int):
    for i in range(0, len(todo), size):
        yield todo[i : i + size]


def _make_batch(docs: Sequence[Mapping], loaded: Sequence[tuple], prompts: Mapping[str, str]):
    import torch

    from geovr.protocols import Batch

    times = [rest[0] if rest else None for _, _, *rest in loaded]
    return Batch(
        frames=torch.stack([torch.as_tensor(f).float() for f, *_ in loaded]),
        frame_indices=torch.stack([torch.as_tensor(ix).long() for _, ix, *_ in loaded]),
        frame_times=None if any(t is None for t in times) else torch.stack([torch.as_tensor(t).float() for t in times]),
        sample_ids=[d["id"] for d in docs],
        questions=[prompts[d["id"]] for d in docs],  # the full protocol prompt, used verbatim
        answers=["" for _ in docs],
        options=[None for _ in docs],  # options are already part of the prompt text
        question_types=[d["question_type"] for d in docs],
        scene_ids=[str(d.get("scene_name", "")) for d in docs],
    )


def _resize(frames, size):
    import torch.nn.functional as F

    if size is None or tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=tuple(size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _answer(backbone, docs, load_frames, prompts, gen, seed, frame_size) -> list[str]:
    """Generate answers for ``docs`` (sub-batched by frame shape); one string per doc."""
    import torch

    loaded = []
    for d in docs:
        frames, idx, *times = load_frames(d)  # an optional third item: each frame's time in seconds
        loaded.append((_resize(torch.as_tensor(frames).float(), frame_size), idx, *times))
    out: dict[str, str] = {}
    groups: dict[tuple, list[int]] = {}
    for i, (f, *_) in enumerate(loaded):
        groups.setdefault(tuple(f.shape), []).append(i)
    for idxs in groups.values():
        sub = [docs[i] for i in idxs]
        torch.manual_seed(batch_seed(seed, sub[0]["id"]))
        with torch.no_grad():
            texts = backbone.generate(_make_batch(sub, [loaded[i] for i in idxs], prompts), **gen)
        if len(texts) != len(sub):
            from geovr.errors import GeovrError

            raise GeovrError(f"backbone.generate returned {len(texts)} answers for {len(sub)} questions")
        for d, t in zip(sub, texts, strict=False):
            if not isinstance(t, str):
                from geovr.errors import GeovrError

                raise GeovrError(
                    f"backbone.generate returned {type(t).__name__} {t!r} for question {d['id']!r}; "
                    f"a backbone must answer with strings"
                )
        out.update({d["id"]: t for d, t in zip(sub, texts, strict=False)})
    return [out[d["id"]] for d in docs]


def run_qa(
    backbone,
    docs: Sequence[Mapping],
    load_frames: FrameLoader,
    *,
    evaluator: str,
    protocol: Protocol,
    output_dir: str | Path,
    generation: Mapping,
    seed: int = 0,
    batch_size: int = 1,
    frame_size: Sequence[int] | None = None,
    progress: bool = True,
    compare: str | None = None,
    extra: Mapping | None = None,
) -> dict[str, float]:
    """Answer, score and report ``docs`` (VSI-format records; see :mod:`geovr.eval.vsibench`).

    ``load_frames(doc)`` returns ``(frames [S,3,H,W] float in [0,1], frame_indices [S])`` and optionally a
    third item, ``frame_times [S]`` seconds (passed to the backbone as ``Batch.frame_times``). Returns the
    per-task scores (0–100, ``nan`` for absent tasks) plus ``overall``.
    """
    from tqdm.auto import tqdm

    check_protocol(protocol)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = [dict(d, id=str(d["id"])) for d in docs]
    if len({d["id"] for d in docs}) != len(docs):
        from geovr.errors import DataError

        raise DataError(f"{evaluator}: question ids are not unique")
    prompts = {d["id"]: doc_prompt(d, protocol=protocol) for d in docs}
    state = _partial_state()
    multi = state is not None and state.num_processes > 1
    settings = {
        "evaluator": evaluator,
        "protocol": protocol,
        "generation": dict(generation),
        "seed": seed if generation.get("do_sample") else None,
        "frame_size": list(frame_size) if frame_size is not None else None,
        **dict(extra or {}),
    }
    _check_settings(out, settings, write=not multi or state.is_main_process)
    done = _answered(out, prompts)
    todo = [d for d in docs if d["id"] not in done]
    rank_file = out / (f"predictions.rank{state.process_index}.jsonl" if multi else PREDICTIONS)
    mine = todo
    if multi:  # split all docs (not just the unanswered ones) so every process gets the same partition
        with state.split_between_processes(docs) as shard:
            mine = [d for d in shard if d["id"] not in done]
    was_training = getattr(backbone, "training", False)
    if hasattr(backbone, "eval"):
        backbone.eval()
    try:
        bar = tqdm(total=len(mine), desc=evaluator, disable=not progress or not mine, leave=False)
        for chunk in _batches(mine, batch_size):
            texts = _answer(backbone, chunk, load_frames, prompts, dict(generation), seed, frame_size)
            rows = []
            for d, text in zip(chunk, texts, strict=False):
                parsed, s = score_question(d, text, protocol=protocol)
                rows.append(
                    {
                        "id": d["id"],
                        "question_type": d["question_type"],
                        "task": task_of(d["question_type"]),
                        "prompt": prompts[d["id"]],
                        "response": text,
                        "parsed": parsed,
                        "ground_truth": d["ground_truth"],
                        "score": s,
                    }
                )
            append_jsonl(rank_file, rows)
            bar.update(len(chunk))
        bar.close()
    finally:
        if was_training and hasattr(backbone, "train"):
            backbone.train()

    if multi:
        state.wait_for_everyone()
        if state.is_main_process:
            merged = _answered(out, prompts)
            tmp = out / (PREDICTIONS + ".tmp")
            tmp.unlink(missing_ok=True)
            append_jsonl(tmp, [merged[d["id"]] for d in docs if d["id"] in merged])
            tmp.replace(out / PREDICTIONS)
            for p in out.glob("predictions.rank*.jsonl"):
                p.unlink()
        state.wait_for_everyone()

    answered = _answered(out, prompts)
    scored = [d for d in docs if d["id"] in answered]
    per_q = [score_question(d, answered[d["id"]]["response"], protocol=protocol)[1] for d in scored]
    qts = [d["question_type"] for d in scored]
    scores = aggregate(qts, per_q, protocol=protocol)
    if not multi or state.is_main_process:
        info = {
            "protocol": protocol,
            "generation": dict(generation),
            "seed": seed,
            "num_questions": len(scored),
            **dict(extra or {}),
        }
        write_results(out, evaluator=evaluator, scores=scores, counts=task_counts(qts), extra=info, compare=compare)
    return scores


def _partial_state():
    """accelerate's process state (``None`` when accelerate is missing). Without CUDA it is created with
    ``cpu=True`` so that processes started by ``accelerate launch``/``torchrun`` on a CPU machine join a
    gloo group instead of each running alone."""
    try:
        import torch
        from accelerate import PartialState
    except ImportError:  # pragma: no cover - accelerate is a core dependency
        return None
    return PartialState(cpu=not torch.cuda.is_available())


def finite(scores: Mapping[str, float]) -> dict[str, float]:
    """Drop ``nan`` entries (absent tasks), e.g. before logging."""
    return {k: v for k, v in scores.items() if not (isinstance(v, float) and math.isnan(v))}
