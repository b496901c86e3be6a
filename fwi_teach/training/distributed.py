"""Helpers that let :func:`fwi_teach.training.fit` run unchanged under ``torchrun``: process group, sharding, reductions.

``torchrun --nproc_per_node=K script.py`` starts K copies of a script and sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in each one's environment.
:func:`setup` reads those variables: with ``WORLD_SIZE > 1`` it joins the
process group (backend ``nccl`` when training on CUDA, ``gloo`` on CPU) and
gives each process its own GPU (``cuda:LOCAL_RANK``); without them it returns a
single-process context and does nothing else. The training loop then wraps the
model in ``DistributedDataParallel``, shards the data with a seeded
``DistributedSampler``, and uses the helpers below to add up metrics over all
processes, keep BatchNorm statistics identical everywhere, and let only rank 0
write checkpoints and draw progress bars.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from ..runtime import resolve_device

__all__ = ["DistContext", "setup", "env_world_size", "all_reduce_sum", "all_reduce_max",
           "broadcast_buffers", "barrier", "ShardSampler"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) training run.

    Attributes
    ----------
    world_size : int
        Number of processes (1 without ``torchrun``).
    rank : int
        Global index of this process; rank 0 writes files and shows progress.
    local_rank : int
        Index of this process on its machine (its GPU index on CUDA).
    device : torch.device
        Device this process trains on.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes checkpoints and shows progress."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; torchrun sets it to a "
                         f"process count / index. Unset it to train in a single process.") from None


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    return _env_int("WORLD_SIZE", 1)


def setup(device: str | torch.device = "auto") -> DistContext:
    """Detect ``torchrun`` from the environment and join its process group if needed.

    Parameters
    ----------
    device : str or torch.device, default "auto"
        ``"auto"`` picks CUDA when available, else CPU. Under ``torchrun`` a bare
        ``"cuda"`` becomes ``cuda:LOCAL_RANK``.

    Returns
    -------
    DistContext
        World size, rank, local rank and the device of this process.

    Raises
    ------
    ValueError
        If the ``torchrun`` variables are inconsistent or CUDA is asked for but absent.
    """
    world_size = env_world_size()
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"WORLD_SIZE={world_size}, RANK={rank} is inconsistent: expected 0 <= RANK < WORLD_SIZE. "
                         f"Launch with torchrun, or unset both to train in a single process.")
    dev = resolve_device(device, local_rank)
    if world_size > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            atexit.register(_destroy)
        if dist.get_world_size() != world_size:
            raise ValueError(f"the process group has {dist.get_world_size()} processes but WORLD_SIZE={world_size}")
    return DistContext(world_size=world_size, rank=rank, local_rank=local_rank, device=dev)


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a list of numbers over all processes (returned unchanged in a single process).

    Parameters
    ----------
    values : list of float
        This process's partial sums (e.g. loss sum and sample count).
    ctx : DistContext
        From :func:`setup`.

    Returns
    -------
    list of float
        The totals, identical on every rank.
    """
    if not ctx.is_distributed:
        return [float(v) for v in values]
    device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_max(value: float, ctx: DistContext) -> float:
    """Largest ``value`` over all processes (e.g. the slowest rank's training time)."""
    if not ctx.is_distributed:
        return float(value)
    device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def broadcast_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Copy every buffer (BatchNorm running statistics) from rank 0 to the other ranks.

    ``DistributedDataParallel`` averages gradients, so parameters stay
    identical, but each rank updates its BatchNorm running statistics from its
    own batches. Calling this at the end of an epoch makes the whole state
    dict identical on every rank before validation and checkpointing.
    """
    if not ctx.is_distributed:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def barrier(ctx: DistContext) -> None:
    """Wait for all ranks (no-op in a single process)."""
    if ctx.is_distributed:
        dist.barrier()


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of ``range(n)``: an exact, non-overlapping shard.

    Used for evaluation, where ``DistributedSampler``'s padding (repeating
    samples so every rank gets the same count) would bias the metrics.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.n, self.rank, self.world_size = int(n), int(rank), int(world_size)

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))
