"""Deterministic, resumable, process-sharded data order for training.

Epoch ``e`` visits the dataset in ``randperm(n)`` drawn from a generator seeded with ``seed + e`` (or in
order without ``shuffle``), padded by wrapping to a multiple of the number of processes; process ``r``
takes every ``world``-th index starting at ``r``. A position is ``(epoch, batch)``: the next micro-batch
to read, which is all a checkpoint needs to continue the exact same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from geovr.data.collate import collate


class ShardedEpochSampler(Sampler[int]):
    """Indices of one epoch for one process, starting at sample ``start`` of this process's shard."""

    def __init__(
        self, n: int, *, epoch: int, seed: int, shuffle: bool = True, world: int = 1, rank: int = 0, start: int = 0
    ):
        self.n, self.epoch, self.seed, self.shuffle = n, epoch, seed, shuffle
        self.world, self.rank, self.start = world, rank, start

    def shard(self) -> list[int]:
        """This process's indices for the whole epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = math.ceil(self.n / self.world) * self.world
        order = (order * math.ceil(total / self.n))[:total]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start :])

    def __len__(self) -> int:
        return max(0, math.ceil(self.n / self.world) - self.start)


def batches_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    """Micro-batches each process reads per epoch (the last one may be short)."""
    return math.ceil(math.ceil(n / world) / batch_size)


def batch_stream(
    dataset,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool,
    world: int,
    rank: int,
    num_workers: int = 0,
    epoch: int = 0,
    batch: int = 0,
    max_epochs: int | None = None,
):
    """Yield ``(epoch, batch_index, Batch)`` from position ``(epoch, batch)`` on, epoch after epoch.

    A fresh DataLoader is made per epoch with a generator seeded from ``seed`` and the epoch, so worker
    seeds (and anything a dataset draws from torch's RNG in workers) do not depend on where a run resumed.
    Stops after ``max_epochs`` epochs (``None`` = never).
    """
    n = len(dataset)
    while max_epochs is None or epoch < max_epochs:
        if hasattr(dataset, "set_epoch"):  # mixtures draw epoch-dependent records (geovr.data.conversations)
            dataset.set_epoch(epoch)
        sampler = ShardedEpochSampler(
            n, epoch=epoch, seed=seed, shuffle=shuffle, world=world, rank=rank, start=batch * batch_size
        )
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed * 7919 + epoch),
        )
        for i, b in enumerate(loader, start=batch):
            yield epoch, i, b
        epoch, batch = epoch + 1, 0
