"""Running on several processes with ``torchrun``: who am I, how big is my batch, how to stop.

``torchrun --nproc_per_node G -m minidit.train ...`` starts G copies of the trainer and tells
each its place through environment variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``). Each process owns one GPU (or a share of the CPU), keeps a full
replica of the model, trains on its own slice of every global batch, and DistributedDataParallel
averages the gradients so the replicas stay identical. Without those variables minidit runs as a
single process and nothing here does anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and pictures; the others only train."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def split_global_batch(global_batch: int, world_size: int) -> int:
    """The per-process batch size when a global batch is shared by ``world_size`` processes.

    Every process must get the same number of examples, so the division must be exact:
    raise ``ValueError`` (saying which numbers do not divide and what to change) unless
    ``global_batch % world_size == 0``; also raise for a non-positive ``global_batch`` or
    ``world_size``. Returns ``global_batch // world_size`` (the official code asserts the
    same). With 8 GPUs and the paper's global batch of 256, each GPU trains on 32 images.
    """
    # BEGIN SOLUTION ch06 difficulty=1 minutes=10
    if global_batch < 1 or world_size < 1:
        raise ValueError(f"global batch ({global_batch}) and world size ({world_size}) must be positive")
    if global_batch % world_size != 0:
        raise ValueError(f"--global-batch-size {global_batch} is not divisible by the number of processes "
                         f"({world_size}); pick a multiple of {world_size}")
    return global_batch // world_size
    # END SOLUTION


def rank_seed(global_seed: int, world_size: int, rank: int) -> int:
    """Each process's own seed, as in the official code: ``global_seed * world_size + rank``.

    Different seeds give the ranks different noise and timesteps (otherwise G processes would
    draw the same ``eps`` and ``t`` for their different images, wasting variety), while the whole
    job is still reproducible from one number.
    """
    return global_seed * world_size + rank


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun; otherwise describe a single process.

    NCCL when the processes have GPUs, gloo on CPU. Each rank uses GPU ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = dict(device_id=dev) if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def cleanup_distributed() -> None:
    """Leave the process group cleanly: wait for every rank, then destroy the group.

    With gloo on CPU a process that exits with the group still alive can abort in the
    interpreter's shutdown (its background threads are torn down in the wrong order), turning a
    successful run into a non-zero exit. A barrier followed by ``destroy_process_group`` before
    returning avoids it, so runs exit 0 every time.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``values`` over all ranks (for logging the loss of the whole global batch)."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= info.world_size
    return values


def min_over_ranks(value: int, info: DistInfo) -> int:
    """The smallest ``value`` of all ranks (e.g. the first step at which any rank's loss broke)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def gather_object(obj, info: DistInfo) -> list | None:
    """Every rank's ``obj`` (any picklable object), in rank order; None when running alone."""
    if not info.enabled:
        return None
    objects = [None] * info.world_size
    dist.all_gather_object(objects, obj)
    return objects


def parameters_in_sync(model: torch.nn.Module, info: DistInfo) -> bool:
    """Check that every rank holds the same weights (DDP's promise), by comparing checksums.

    Each rank sums its parameters in float64 (a sum and a position-weighted sum, so swapped
    values would also show); rank 0 compares the gathered checksums. Called once at the end of
    a run: it costs one collective.
    """
    if not info.enabled:
        return True
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
        local = torch.stack([flat.sum(), (flat * weights).sum() / flat.numel()])
    gathered = [torch.zeros_like(local) for _ in range(info.world_size)]
    dist.all_gather(gathered, local)
    return all(torch.equal(g, gathered[0]) for g in gathered)
