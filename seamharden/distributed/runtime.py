"""The process group, the world and the global batch's split.

Rank and world size come from torch.distributed only (which reads the launcher's environment
when ``init_process_group`` runs); no function here reads the environment itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class World:
    """This process's rank and the number of processes (1 and rank 0 without a process group)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress and writes shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The world of the initialised default process group, or the single-process world."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_process_group(timeout_s: float, backend: str | None = None) -> World:
    """Join the default process group set up by the launcher (torchrun's rendezvous variables).

    ``timeout_s``: how long a collective waits for the other ranks before failing (seconds in
    tests so that a mismatch fails fast; recipes leave rank 0 time to save a large model).
    ``backend``: default nccl with CUDA, gloo on CPUs. A no-op returning the world if already joined.
    """
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
        if backend == "nccl":
            torch.cuda.set_device(dist.get_rank() % torch.cuda.device_count())
    return current_world()


def device_mesh(world: World, device_type: str):
    """A 1-D mesh over all ranks on ``device_type`` ("cpu" or "cuda"): FSDP2 needs it explicit on CPUs,
    where without one it may try to move the model to CUDA."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device_type, (world.size,))


def split_batch(batch: Batch, world: World) -> Batch:
    """This rank's rows of a global batch: contiguous chunks of rows, the first ranks one row more
    when the rows do not divide evenly (``torch.tensor_split``). Every rank needs at least one row
    with a labelled token: the global token mean divides by the tokens of all ranks."""
    rows = next(iter(batch.values())).shape[0]
    if rows < world.size:
        raise ValueError(f"a global batch of {rows} rows cannot be split over {world.size} ranks; "
                         f"raise train.batch_size to at least {world.size}")
    return {key: torch.tensor_split(value, world.size)[world.rank] for key, value in batch.items()}


def _collective_device() -> torch.device:
    """Where a small tensor for a collective lives: the current GPU under nccl, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier(world: World) -> None:
    """Wait for every rank (a no-op in one process): e.g. before rank 0 writes what the others checked."""
    if world.distributed:
        dist.barrier()


def any_rank(flag: bool, world: World) -> bool:
    """Whether ``flag`` is true on any rank (one all-reduce; ``flag`` itself in one process), so that every
    rank takes the same branch (stop after a signal that reached one of them)."""
    if not world.distributed:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def global_sum(value: int, world: World) -> int:
    """``value`` summed over the ranks (itself in one process), e.g. the tokens of a global batch."""
    if not world.distributed:
        return value
    total = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(total)
    return int(total.item())


def from_main(value: float, world: World) -> float:
    """Rank 0's ``value`` on every rank (one broadcast; ``value`` itself in one process), so that a decision
    taken on it (the utility controller's budget check) is the same everywhere."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.broadcast(tensor, src=0)
    return float(tensor.item())
