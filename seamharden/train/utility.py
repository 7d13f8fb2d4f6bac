"""The utility budget at run time: the benign KL anchor and the controller that keeps weights within budget.

``AnchorReference`` gives the anchor's reference logits: a frozen copy of the starting weights
(``copy``: one more weight-sized buffer on the device) or the model itself with its LoRA adapters
disabled (``adapters_off``: no extra memory, the adapter-free model *is* the starting model).

``UtilityController`` scores the defender's benign validation records every ``check_every``
steps (``recipe.utility``), applies ``seamharden.core.budget``'s rules, and keeps the last
within-budget trainable weights on disk under ``<run>/kept/step-<N>/``. A checkpoint records
which kept copy it refers to (``state_dict``); copies older than that one are pruned after the
checkpoint is written, and copies newer than the restored checkpoint are pruned on resume, so
a resumed run ends on exactly the copy an uninterrupted one would.

Under torchrun (FSDP2) every rank scores the same records and rank 0's score decides (one
broadcast), each rank writes its own shards of a kept copy (``torch.distributed.checkpoint``,
``<run>/kept/step-<N>/sharded``) and rank 0 alone renames and prunes the directories.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from seamharden.core.budget import next_anchor_weight, within_budget
from seamharden.core.estimator import LOCAL, Autograd
from seamharden.core.losses import kl_rows, scored_forward
from seamharden.distributed.runtime import World, barrier, from_main
from seamharden.recipe.schema import UtilitySection

KEPT = "kept"
PREFIX = "step-"

Score = Callable[[torch.nn.Module], float]
"""Scores a model on the validation records (eval mode, no grad); loss or exact-match share."""


def reference_mode(section: UtilitySection, lora: bool) -> str:
    """``copy`` or ``adapters_off``, resolving ``auto`` by whether the run trains LoRA adapters."""
    if section.reference == "auto":
        return "adapters_off" if lora else "copy"
    if section.reference == "adapters_off" and not lora:
        raise ValueError("utility.reference=adapters_off needs model.lora (there are no adapters to disable)")
    return section.reference


class AnchorReference:
    """Reference logits ``[N, V]`` at a batch's N scored positions for the anchor (``scored_forward``),
    without gradients, in eval mode (no dropout)."""

    def __init__(self, model: torch.nn.Module, mode: str):
        self.model, self.mode = model, mode
        self.frozen = copy.deepcopy(model).eval().requires_grad_(False) if mode == "copy" else None

    @torch.no_grad()
    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.frozen is not None:
            return scored_forward(self.frozen, batch).logits
        was_training = self.model.training
        self.model.eval()
        try:
            with self.model.disable_adapter():
                return scored_forward(self.model, batch).logits
        finally:
            self.model.train(was_training)


def anchor_backward(model: torch.nn.Module, reference: AnchorReference, batch: dict[str, torch.Tensor],
                    weight: float, params: Sequence[torch.nn.Parameter], ops: Autograd = LOCAL) -> float:
    """Add ``weight * grad KL(p_ref || p)`` on ``batch`` into ``p.grad``; returns the KL (fp32 scalar).

    ``ops``: the step's operations (``seamharden.core.estimator.Autograd``); under FSDP2 the KL is the
    mean over the global batch's labelled tokens and the reference is a sharded frozen copy.
    """
    ref_logits = reference.logits(batch)
    kl = ops.mean(kl_rows(scored_forward(model, batch).logits, ref_logits), batch)
    ops.backward(kl * weight, params)
    return kl.item()


@dataclass
class ControllerState:
    """What a checkpoint must restore: the anchor weight, the starting score, the kept copy's step."""

    weight: float
    start: float | None = None
    kept_step: int = 0


class UtilityController:
    """Anchor weight and kept weights within the utility budget (see the module docstring)."""

    def __init__(self, section: UtilitySection, score: Score | None, run_dir: Path, world: World | None = None):
        if section.controller and score is None:
            raise ValueError("utility.check_every > 0 needs a validation score")
        self.section, self._score, self.world = section, score, world or World()
        self.root = Path(run_dir) / KEPT
        self.state = ControllerState(weight=section.anchor)

    def score(self, model: torch.nn.Module) -> float:
        """The validation score, rank 0's on every rank (the ranks then take the same decisions)."""
        return from_main(self._score(model), self.world)

    @property
    def weight(self) -> float:
        return self.state.weight

    @property
    def enabled(self) -> bool:
        return self.section.controller

    def begin(self, model: torch.nn.Module) -> dict:
        """Score the starting model and keep its weights as step 0; returns its metrics entry."""
        if not self.enabled:
            return {}
        self.state.start = self.score(model)
        self._save(model, 0)
        self.state.kept_step = 0
        return {"val_metric": self.state.start, "within_budget": True, "kept": True}

    def after_step(self, step: int, model: torch.nn.Module) -> dict:
        """At check steps: score, keep a copy when within budget, move the anchor weight. Metrics entries."""
        if not self.enabled or step % self.section.check_every:
            return {}
        s = self.section
        value = self.score(model)
        within = within_budget(value, self.state.start, s.tolerance, s.metric)
        if within:
            self._save(model, step)
            self.state.kept_step = step
        if s.anchor > 0:
            self.state.weight = next_anchor_weight(self.state.weight, within, raise_by=s.raise_by,
                                                   lower_by=s.lower_by, floor=s.anchor, top=s.max_anchor)
        return {"val_metric": value, "within_budget": within, "kept": within}

    def finish(self, model: torch.nn.Module) -> int | None:
        """Load the last kept copy into ``model``; returns its step (None when the controller is off)."""
        if not self.enabled:
            return None
        if self.world.distributed:
            from seamharden.distributed.checkpoint import load_weights

            load_weights(self._dir(self.state.kept_step), model)
            return self.state.kept_step
        weights = load_file(self._dir(self.state.kept_step) / "trainable.safetensors")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights.items():
                params[name].copy_(tensor)
        return self.state.kept_step

    @staticmethod
    def discard(run_dir: Path) -> None:
        """Delete every kept copy of a run (once its finished model is saved)."""
        shutil.rmtree(Path(run_dir) / KEPT, ignore_errors=True)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return asdict(self.state)

    def load_state_dict(self, state: dict, step: int) -> None:
        """Restore at checkpoint ``step``: copies kept after it belong to the lost continuation."""
        self.state = ControllerState(**state)
        if not self._dir(self.state.kept_step).is_dir():
            raise ValueError(f"the kept weights of step {self.state.kept_step} are missing under {self.root}")
        self._prune(lambda s: s > step and s != self.state.kept_step)

    def checkpointed(self) -> None:
        """After a checkpoint: copies older than the one it refers to are never needed again."""
        self._prune(lambda s: s < self.state.kept_step)

    def _dir(self, step: int) -> Path:
        return self.root / f"{PREFIX}{step}"

    def _save(self, model: torch.nn.Module, step: int) -> None:
        """Write ``kept/step-<step>`` atomically: in a temporary directory renamed once complete."""
        final, tmp = self._dir(step), self.root / f".tmp-{PREFIX}{step}"
        main = self.world.is_main
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if self.world.distributed:
            from seamharden.distributed.checkpoint import save_weights

            barrier(self.world)
            save_weights(tmp, model)
            barrier(self.world)
        else:
            weights = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
            save_file(weights, tmp / "trainable.safetensors")
        if main:
            (tmp / "kept.json").write_text(json.dumps({"step": step}))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        barrier(self.world)

    def _prune(self, drop: Callable[[int], bool]) -> None:
        """Delete the kept copies whose step ``drop`` selects (rank 0; the others wait for it)."""
        if not self.world.is_main or not self.root.is_dir():
            barrier(self.world)
            return
        for path in self.root.iterdir():
            if path.name.startswith(PREFIX) and drop(int(path.name[len(PREFIX):])):
                shutil.rmtree(path, ignore_errors=True)
        barrier(self.world)
