"""Per-source sample counts and bad-record counts of a training run (written to ``metrics.jsonl``).

The trainer feeds every micro-batch to :meth:`DataCounter.update`; :meth:`DataCounter.metrics` gives the
running totals as ``data/<source>/samples`` and ``data/skipped/<source>/<reason>`` (records left out
when the dataset was loaded included). A dataset that declares ``skip_budget()`` (see
:mod:`geovr.data.conversations`) stops the run with :class:`DataError` once more records are bad than
``max_skip_fraction`` allows. :meth:`state`/:meth:`load` carry the totals across a resume.
"""

from __future__ import annotations

from collections import Counter

from geovr.errors import DataError


class DataCounter:
    """Running data counts of one process (see the module docstring)."""

    def __init__(self, dataset, world: int = 1):
        self.samples: Counter = Counter()
        self.skipped: Counter = Counter()
        self.load_skips = dict(dataset.load_skip_counts()) if hasattr(dataset, "load_skip_counts") else {}
        budget = dataset.skip_budget() if hasattr(dataset, "skip_budget") else None
        self.fraction = getattr(dataset, "max_skip_fraction", None)
        self.budget = None if budget is None else max(0, budget - sum(self.load_skips.values())) / max(1, world)
        self.names = [s.name for s in getattr(dataset, "sources", [])]
        self.reasons = list(getattr(dataset, "reasons", ()))

    def update(self, batch) -> None:
        """Count ``batch.sources`` and ``batch.skipped``; raise when the bad-record budget is exceeded."""
        self.samples.update(s for s in (getattr(batch, "sources", None) or []) if s)
        skipped = getattr(batch, "skipped", None) or {}
        self.skipped.update(skipped)
        if self.budget is not None and sum(self.skipped.values()) > self.budget:
            raise DataError(
                f"training data: {sum(self.skipped.values())} bad records met in this process "
                f"(+{sum(self.load_skips.values())} left out on load) exceed max_skip_fraction = "
                f"{self.fraction}: {dict(self.skipped)}; fix the data or raise max_skip_fraction "
                f'(on_error = "raise" names the first bad record)'
            )

    def metrics(self, accelerator=None) -> dict[str, int]:
        """``{"data/<source>/samples": n, "data/skipped/<source>/<reason>": n}`` so far, summed over the
        processes of ``accelerator`` (every process must call it: the keys are fixed by the dataset's
        sources and the reasons)."""
        keys = sorted(set(self.samples) | set(self.names))
        reasons = sorted(set(self.skipped) | {f"{n}/{r}" for n in self.names for r in self.reasons})
        values = [self.samples.get(k, 0) for k in keys] + [self.skipped.get(k, 0) for k in reasons]
        if accelerator is not None and accelerator.num_processes > 1:
            import torch

            t = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
            values = [int(round(v)) for v in accelerator.reduce(t, reduction="sum").tolist()]
        out = {f"data/{k}/samples": v for k, v in zip(keys, values, strict=False)}
        skipped = Counter(self.load_skips) + Counter(dict(zip(reasons, values[len(keys) :], strict=False)))
        out.update({f"data/skipped/{k}": v for k, v in sorted(skipped.items()) if v})
        return out

    def state(self) -> dict:
        """This process's totals (the trainer saves one per process)."""
        return {"samples": dict(self.samples), "skipped": dict(self.skipped)}

    def load(self, state, rank: int = 0) -> None:
        """Restore :meth:`state` (``state`` may be the per-process list a checkpoint holds)."""
        if isinstance(state, list):
            state = state[rank] if rank < len(state) else None
        if state:
            self.samples = Counter(state.get("samples", {}))
            self.skipped = Counter(state.get("skipped", {}))
