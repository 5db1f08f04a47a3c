"""The batches of a run: each rank its share of every global batch, epoch after epoch, resumable.

As in the official code, a ``DistributedSampler`` deals each rank its own slice of a shuffled
epoch (the order depends only on the seed and the epoch), and the ``DataLoader`` batches it. A
resumed run must continue on exactly the next batch, even mid-epoch: ``SkipSampler`` starts the
epoch's order ``skip`` indices in, and the loader's generator is re-seeded per epoch, so the batch
at optimizer step ``s`` is the same whether the run got there in one go or was stopped and resumed.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from minidit.training.distributed import DistInfo


class SkipSampler(Sampler):
    """Wraps the DistributedSampler to start ``skip`` indices into the epoch (for exact resume).

    The DistributedSampler's order depends only on (seed, epoch), so skipping the batches a
    stopped run already consumed puts a resumed run on exactly the next batch.
    """

    def __init__(self, base: DistributedSampler):
        self.base, self.skip = base, 0

    def __iter__(self):
        it = iter(self.base)
        for _ in range(self.skip):
            next(it)
        yield from it

    def __len__(self):
        return len(self.base) - self.skip


@dataclass
class TrainLoader:
    """The run's data pipeline: sampler, resumable wrapper, loader, and the per-epoch seed."""

    sampler: DistributedSampler
    skipper: SkipSampler
    loader: DataLoader
    generator: torch.Generator
    seed: int
    steps_per_epoch: int

    def batches(self, start_step: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(epoch, x, y)`` for optimizer steps ``start_step, start_step + 1, ...``, without end."""
        first_epoch, batch_in_epoch = divmod(start_step, self.steps_per_epoch)
        for epoch in itertools.count(first_epoch):
            self.sampler.set_epoch(epoch)
            self.skipper.skip = batch_in_epoch * self.loader.batch_size
            self.generator.manual_seed(self.seed * 100_003 + epoch)
            for x, y in self.loader:
                yield epoch, x, y
            batch_in_epoch = 0


def make_loader(dataset: Dataset, local_batch: int, info: DistInfo, seed: int, num_workers: int) -> TrainLoader:
    """Shuffle with ``seed``, drop the ragged last batch (every step has a full global batch)."""
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=seed, drop_last=True)
    steps_per_epoch = len(sampler) // local_batch
    if steps_per_epoch == 0:
        raise ValueError(f"the data set has {len(dataset)} images: fewer than one batch of {local_batch} per "
                         f"process; lower --global-batch-size")
    skipper = SkipSampler(sampler)
    generator = torch.Generator()
    loader = DataLoader(dataset, batch_size=local_batch, sampler=skipper, drop_last=True,
                        num_workers=num_workers, pin_memory=info.device.type == "cuda",
                        persistent_workers=num_workers > 0, generator=generator)
    return TrainLoader(sampler, skipper, loader, generator, seed, steps_per_epoch)
