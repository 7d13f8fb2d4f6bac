"""The demo's hardening loop: a plain AdamW loop over ``seam_step`` on the toy world, within a utility budget.

It differs from ``seamharden.train.loop`` in what the toy needs: a utility controller. Every
``check_every`` steps it scores the benign skill on the defender's validation set
(:func:`world.val_benign`, training words, never the eval words). While the score is within
``utility_tolerance`` of the start, it lowers the share of benign records mixed into the
D_aln batch (so L_up protects the benign skill less and SEAM's coupling is free to act) and
keeps a copy of the weights; when the score falls below, it raises that share. The result is
the last copy within budget. Why: a fixed share was either too protective (no
self-destruction) or too loose (up to 68 points of utility lost) depending on the draw
(docs/demo.md). No checkpoints or clipping: a hardening run takes under a minute.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

import torch

from seamharden.core.step import SeamConfig, seam_step
from seamharden.demo import world

HARDEN = dict(steps=300, lr=1e-3, batch_size=32, n_data=2000, warmup=20, utility_tolerance=0.035,
              check_every=10, n_val=90, mix_up=0.3, mix_down=0.1, max_mix=0.9,
              seam=SeamConfig(alpha=1.0, beta=1.0, unlearn_loss="bounded_lens", difference="forward",
                              step_policy="relative"))


def next_mix(mix: float, within_budget: bool, up: float, down: float, top: float) -> float:
    """The controller: less benign protection while within budget, more (faster) when not."""
    return max(0.0, mix - down) if within_budget else min(top, mix + up)


def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def harden(model, tok, steps: int = HARDEN["steps"], lr: float = HARDEN["lr"], batch_size: int = HARDEN["batch_size"],
           cfg: SeamConfig = HARDEN["seam"], n_data: int = HARDEN["n_data"],
           utility_tolerance: float = HARDEN["utility_tolerance"], check_every: int = HARDEN["check_every"],
           seed: int = 0, log=None, log_every: int = 50, **cfg_overrides):
    """Harden ``model`` in place with SEAM on the toy world's D_adv / D_aln / D_bgn; returns the history.

    Each history entry is ``SeamStats.as_dict()`` plus ``benign_mix`` (the share used at that
    step) and, on check steps, ``val_benign`` and ``kept``. The model ends as the last kept copy
    (after the last entry with ``kept`` True; the starting weights if there is none).
    """
    if cfg_overrides:
        cfg = replace(cfg, **cfg_overrides)
    torch.manual_seed(seed)
    adv, aln, bgn = world.d_adv(n_data, seed), world.d_aln(n_data, seed), world.d_bgn(n_data, seed)
    val = world.val_benign(HARDEN["n_val"], seed)
    floor = world.benign_accuracy(model, tok, val) - utility_tolerance
    kept = _weights(model)
    rng = random.Random(f"harden-{seed}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, HARDEN["warmup"])))
    model.train()
    history = []
    mix = 0.0
    t0 = time.time()
    for step in range(steps):
        n_mix = round(batch_size * mix)
        batches = [world.collate(tok, rng.sample(adv, batch_size)),
                   world.collate(tok, rng.sample(aln, batch_size - n_mix) + rng.sample(bgn, n_mix)),
                   world.collate(tok, rng.sample(bgn, batch_size))]
        opt.zero_grad(set_to_none=True)
        stats = seam_step(model, *batches, cfg)
        opt.step()
        sched.step()
        entry = dict(stats.as_dict(), benign_mix=mix)
        if (step + 1) % check_every == 0:
            acc = world.benign_accuracy(model, tok, val)
            within = acc >= floor
            entry.update(val_benign=acc, kept=within)
            if within:
                kept = _weights(model)
            mix = next_mix(mix, within, HARDEN["mix_up"], HARDEN["mix_down"], HARDEN["max_mix"])
        history.append(entry)
        if log and (step % log_every == 0 or step == steps - 1):
            log(f"harden step {step}: adv {stats.loss_adv:.3f} up {stats.loss_up:.3f} bgn {stats.loss_bgn:.3f} "
                f"cos {stats.cosine:+.3f} benign mix {entry['benign_mix']:.1f} ({time.time() - t0:.0f}s)")
    model.load_state_dict(kept)
    model.eval()
    return history
