"""Optimizers (torch AdamW, bitsandbytes AdamW8bit / PagedAdamW8bit) and the LR schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

from seamharden.recipe.schema import TrainSection


def build_optimizer(params: Sequence[torch.nn.Parameter], train: TrainSection) -> torch.optim.Optimizer:
    """The recipe's optimizer over the trainable parameters.

    The 8-bit optimizers keep their two moments in 8 bits (2 bytes per parameter
    instead of 8), which is what lets a 7B model's SEAM step fit on one 80 GB GPU.
    """
    params = list(params)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    import bitsandbytes as bnb

    if train.optimizer == "adamw8bit":
        return bnb.optim.AdamW8bit(params, lr=train.lr, weight_decay=train.weight_decay)
    if train.optimizer == "paged_adamw8bit":
        return bnb.optim.PagedAdamW8bit(params, lr=train.lr, weight_decay=train.weight_decay)
    raise ValueError(f"unknown optimizer {train.optimizer!r}")


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the base LR at ``step`` (0-based): linear warm-up, then cosine to 0 or constant."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSection) -> LambdaLR:
    warmup = int(round(train.warmup_ratio * train.steps))
    return LambdaLR(optimizer, lambda step: lr_factor(step, train.steps, warmup, train.scheduler))


def set_peak_lr(optimizer: torch.optim.Optimizer, scheduler: LambdaLR, lr: float) -> bool:
    """Make ``lr`` the peak learning rate of a restored optimizer and schedule (``--resume train.lr=...``).

    The schedule keeps its position; the current rate becomes ``lr * factor(position)``, exactly
    as if the run had started with ``lr``. Returns whether anything changed (a resume with the
    same ``lr`` is left bit-identical).
    """
    if all(base == lr for base in scheduler.base_lrs):
        return False
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = lr
        group["lr"] = lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return True
