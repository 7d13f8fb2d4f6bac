"""The demo's hardening loop: a plain AdamW loop over ``seam_step`` on the toy world.

It differs from ``seamharden.train.loop`` in one way the toy needs: 90 % of each D_aln batch
is benign data (``benign_mix``), so L_up also preserves the benign skill. It has no
checkpoints or clipping: a hardening run takes under a minute.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

import torch

from seamharden.core.step import SeamConfig, seam_step
from seamharden.demo import world

HARDEN = dict(steps=150, lr=3e-4, batch_size=32, n_data=2000, warmup=20, benign_mix=0.9,
              seam=SeamConfig(alpha=1.0, beta=1.0, unlearn_loss="bounded_lens", difference="forward",
                              step_policy="relative"))


def harden(model, tok, steps: int = HARDEN["steps"], lr: float = HARDEN["lr"], batch_size: int = HARDEN["batch_size"],
           cfg: SeamConfig = HARDEN["seam"], n_data: int = HARDEN["n_data"], benign_mix: float = HARDEN["benign_mix"],
           seed: int = 0, log=None,
           log_every: int = 50, **cfg_overrides):
    """Harden ``model`` in place with SEAM on the toy world's D_adv / D_aln / D_bgn; returns history.

    ``benign_mix``: fraction of each alignment batch replaced by benign records, so that
    L_up preserves the benign skill as well as the refusals (SEAM's objective has no
    benign SFT term of its own; without it the unlearning term erodes the benign skill).
    """
    if cfg_overrides:
        cfg = replace(cfg, **cfg_overrides)
    torch.manual_seed(seed)
    adv, aln, bgn = world.d_adv(n_data, seed), world.d_aln(n_data, seed), world.d_bgn(n_data, seed)
    rng = random.Random(f"harden-{seed}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, HARDEN["warmup"])))
    model.train()
    history = []
    t0 = time.time()
    for step in range(steps):
        n_mix = round(batch_size * benign_mix)
        batches = [world.collate(tok, rng.sample(adv, batch_size)),
                   world.collate(tok, rng.sample(aln, batch_size - n_mix) + rng.sample(bgn, n_mix)),
                   world.collate(tok, rng.sample(bgn, batch_size))]
        opt.zero_grad(set_to_none=True)
        stats = seam_step(model, *batches, cfg)
        opt.step()
        sched.step()
        history.append(stats.as_dict())
        if log and (step % log_every == 0 or step == steps - 1):
            log(f"harden step {step}: adv {stats.loss_adv:.3f} up {stats.loss_up:.3f} bgn {stats.loss_bgn:.3f} "
                f"cos {stats.cosine:+.3f} ({time.time() - t0:.0f}s)")
    model.eval()
    return history
