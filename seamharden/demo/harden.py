"""The demo's hardening loop: a plain AdamW loop over ``seam_step`` on the toy world, within a utility budget.

It differs from ``seamharden.train.loop`` in what the toy needs: a benign anchor and a utility
controller. The anchor is ``kl_to_reference`` between the model and its starting weights on a
benign batch, added with weight ``anchor`` to the SEAM gradient. Why: without it the coupling
term drives the benign loss towards zero (0.10 -> 0.004 in 150 steps on seed 0, with no benign
training at all), and a saturated skill has a vanishing g_b and a wide margin, so an attack
that follows -g_a barely moves it. SFT on benign data sharpens too; the KL keeps the base's
confidence (docs/demo.md). Every ``check_every`` steps the controller scores the benign skill
on the defender's validation set (:func:`world.val_benign`, training words, never the eval
words): within ``utility_tolerance`` of the start it lowers the anchor weight (not below its
start) and keeps a copy of the weights; below, it raises the weight. The result is the last
copy within budget. No checkpoints or clipping: a hardening run takes about 70 s.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import replace

import torch

from seamharden.core.losses import forward, kl_to_reference
from seamharden.core.step import SeamConfig, seam_step
from seamharden.demo import world

HARDEN = dict(steps=600, lr=1e-3, batch_size=32, n_data=2000, warmup=20, utility_tolerance=0.035,
              check_every=10, n_val=90, anchor=1.0, anchor_up=1.0, anchor_down=0.3, anchor_top=3.0,
              seam=SeamConfig(alpha=1.0, beta=1.0, unlearn_loss="bounded_lens", difference="forward",
                              step_policy="relative", relative_step=1e-4, self_check=False))


def next_anchor(weight: float, within_budget: bool, up: float, down: float, floor: float, top: float) -> float:
    """The controller: a lighter anchor while within budget (never below ``floor``), a heavier one when not."""
    return max(floor, weight - down) if within_budget else min(top, weight + up)


def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def anchor_loss(model, reference, batch: dict) -> torch.Tensor:
    """KL(reference || model) on the response positions of a benign batch (fp32 scalar; no grad into ``reference``)."""
    with torch.no_grad():
        ref_logits = forward(reference, batch).logits
    return kl_to_reference(forward(model, batch).logits, ref_logits, batch["labels"])


def harden(model, tok, steps: int = HARDEN["steps"], lr: float = HARDEN["lr"], batch_size: int = HARDEN["batch_size"],
           cfg: SeamConfig = HARDEN["seam"], n_data: int = HARDEN["n_data"],
           utility_tolerance: float = HARDEN["utility_tolerance"], check_every: int = HARDEN["check_every"],
           anchor: float = HARDEN["anchor"], seed: int = 0, log=None, log_every: int = 50, **cfg_overrides):
    """Harden ``model`` in place with SEAM on the toy world's D_adv / D_aln / D_bgn; returns the history.

    The gradient of each step is SEAM's plus ``weight * anchor_loss`` to the starting weights
    (``anchor=0`` turns the anchor off). Each history entry is ``SeamStats.as_dict()`` plus
    ``anchor_weight`` (the weight used at that step) and, on check steps, ``val_benign`` and
    ``kept``. The model ends as the last kept copy (after the last entry with ``kept`` True;
    the starting weights if there is none), in eval mode.
    """
    if cfg_overrides:
        cfg = replace(cfg, **cfg_overrides)
    torch.manual_seed(seed)
    adv, aln, bgn = world.d_adv(n_data, seed), world.d_aln(n_data, seed), world.d_bgn(n_data, seed)
    val = world.val_benign(HARDEN["n_val"], seed)
    floor = world.benign_accuracy(model, tok, val) - utility_tolerance
    kept = _weights(model)
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    rng = random.Random(f"harden-{seed}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, HARDEN["warmup"])))
    model.train()
    history = []
    weight = anchor
    t0 = time.time()
    for step in range(steps):
        batches = [world.collate(tok, rng.sample(recs, batch_size)) for recs in (adv, aln, bgn)]
        opt.zero_grad(set_to_none=True)
        stats = seam_step(model, *batches, cfg)
        if weight > 0:
            (weight * anchor_loss(model, reference, world.collate(tok, rng.sample(bgn, batch_size)))).backward()
        opt.step()
        sched.step()
        entry = dict(stats.as_dict(), anchor_weight=weight)
        if (step + 1) % check_every == 0:
            acc = world.benign_accuracy(model, tok, val)
            within = acc >= floor
            entry.update(val_benign=acc, kept=within)
            if within:
                kept = _weights(model)
            if anchor > 0:
                weight = next_anchor(weight, within, HARDEN["anchor_up"], HARDEN["anchor_down"], anchor,
                                     HARDEN["anchor_top"])
        history.append(entry)
        if log and (step % log_every == 0 or step == steps - 1):
            log(f"harden step {step}: adv {stats.loss_adv:.3f} up {stats.loss_up:.3f} bgn {stats.loss_bgn:.4f} "
                f"cos {stats.cosine:+.3f} anchor {weight:.1f} ({time.time() - t0:.0f}s)")
    model.load_state_dict(kept)
    model.eval()
    return history
