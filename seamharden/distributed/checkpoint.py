"""Sharded checkpoints of a run under torchrun (``torch.distributed.checkpoint``, DCP).

Same layout and atomicity as ``seamharden.train.checkpoint``: ``checkpoints/step-<N>`` appears
(renamed by rank 0) only once complete, and ``state.pt`` (scheduler, data positions, the utility
state; written last by rank 0) marks it complete. The weights and the optimizer state are written
by every rank, each its own shards, under ``sharded/`` (DCP's format, a shared file system across
nodes); each rank's RNG state goes to ``rng-<rank>.pt``. Only the newest checkpoint is kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from seamharden.distributed.runtime import World, barrier
from seamharden.train.checkpoint import PREFIX, TrainState

SHARDS = "sharded"


def is_sharded(path: Path) -> bool:
    """Whether the checkpoint at ``path`` was written by ``save`` here (not by one process)."""
    return (path / SHARDS).is_dir()


def _state_dicts(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optimizer_state}


def save(root: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
         world: World) -> Path:
    """Write ``root/step-<N>`` from every rank (collective); ``state.optimizer`` is ignored (DCP holds it)."""
    import torch.distributed.checkpoint as dcp

    final, tmp = root / f"{PREFIX}{state.step}", root / f".tmp-{PREFIX}{state.step}"
    if world.is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier(world)
    dcp.save(_state_dicts(model, optimizer), checkpoint_id=str(tmp / SHARDS))
    torch.save(state.rng, tmp / f"rng-{world.rank}.pt")
    barrier(world)
    if world.is_main:
        torch.save({"step": state.step, "optimizer": {}, "scheduler": state.scheduler, "data": state.data,
                    "rng": {}, "extra": state.extra, "world_size": world.size}, tmp / "state.pt")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in root.iterdir():
            if old != final and old.name.startswith(PREFIX):
                shutil.rmtree(old, ignore_errors=True)
    barrier(world)
    return final


def reshard(model: torch.nn.Module) -> None:
    """Put every FSDP2 module of ``model`` back to its shards (a ``no_grad`` forward leaves the root
    gathered), so that its registered parameters are the sharded DTensors a state dict reads."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def save_weights(path: Path, model: torch.nn.Module) -> None:
    """Every rank writes its shards of ``model``'s weights under ``path/sharded`` (collective; DCP).

    The utility controller's kept copies under torchrun: no rank ever holds the whole model.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    reshard(model)
    dcp.save({"model": get_model_state_dict(model)}, checkpoint_id=str(path / SHARDS))


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Restore ``model``'s weights in place from ``save_weights``' shards (collective; DCP reshards on load)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    reshard(model)
    state = {"model": get_model_state_dict(model)}
    dcp.load(state, checkpoint_id=str(path / SHARDS))
    set_model_state_dict(model, state["model"])


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, world: World) -> TrainState:
    """Restore the sharded weights and optimizer state in place (collective); returns the rest.

    DCP reshards on load, so the shards need not come from the same number of ranks; a rank with
    no RNG file of its own (more ranks than wrote the checkpoint) takes rank 0's.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    if not is_sharded(path):
        raise ValueError(f"checkpoint {path} was written by one process; resume it without torchrun")
    states = _state_dicts(model, optimizer)
    dcp.load(states, checkpoint_id=str(path / SHARDS))
    set_state_dict(model, optimizer, model_state_dict=states["model"], optim_state_dict=states["optimizer"])
    raw = torch.load(path / "state.pt", weights_only=False)
    rng_file = path / f"rng-{world.rank}.pt"
    rng = torch.load(rng_file if rng_file.exists() else path / "rng-0.pt", weights_only=False)
    return TrainState(raw["step"], {}, raw["scheduler"], raw["data"], rng, raw.get("extra", {}))
