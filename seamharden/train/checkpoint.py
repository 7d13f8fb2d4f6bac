"""Resumable checkpoints, written atomically.

A checkpoint is a directory ``checkpoints/step-<N>`` holding the trainable weights
(safetensors), the optimizer and scheduler state, every RNG state and the data
streams' positions: enough to continue and reproduce the losses of an uninterrupted
run. It is written under a temporary name and renamed into place, so a crash never
leaves a half-written checkpoint that looks valid; only the newest one is kept.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


@dataclass
class TrainState:
    """What a checkpoint restores besides the weights; ``extra`` holds the utility controller's state."""

    step: int
    optimizer: dict
    scheduler: dict
    data: dict
    rng: dict
    extra: dict = field(default_factory=dict)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def copy_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy each tensor of ``weights`` into ``model``'s parameter of that name, in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (None if there is none)."""
    if not root.is_dir():
        return None
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.pt").exists()]
    return max(done, key=lambda p: int(p.name[len(PREFIX):]), default=None)


def save(root: Path, model: torch.nn.Module, state: TrainState) -> Path:
    """Write ``root/step-<N>`` atomically and delete older checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{state.step}"
    tmp = root / f".tmp-{PREFIX}{state.step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_state(model), tmp / "trainable.safetensors")
    torch.save(
        {"step": state.step, "optimizer": state.optimizer, "scheduler": state.scheduler,
         "data": state.data, "rng": state.rng, "extra": state.extra},
        tmp / "state.pt",
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in root.iterdir():
        if old != final and old.name.startswith(PREFIX):
            shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: Path, model: torch.nn.Module) -> TrainState:
    """Load the trainable weights into ``model`` (in place) and return the rest."""
    weights = load_file(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing:
        raise ValueError(f"checkpoint {path} lacks trainable parameters, e.g. {missing[0]}")
    copy_weights(model, weights)
    raw = torch.load(path / "state.pt", weights_only=False)
    return TrainState(raw["step"], raw["optimizer"], raw["scheduler"], raw["data"], raw["rng"], raw.get("extra", {}))
