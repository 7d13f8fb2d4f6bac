"""The demo's attack: full fine-tuning on D_adv with AdamW, then the two judges."""

from __future__ import annotations

import copy
import math
import random
import time

import torch

from seamharden.demo import world

ATTACK = dict(lrs=(1e-4, 2e-4), steps=40, batch_size=32, n_adv=2000, benign_mix=0.0, warmup=0,
              schedule="constant")


def _lr_factor(step: int, steps: int, warmup: int, schedule: str) -> float:
    w = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if schedule == "cosine":
        return w * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
    return w


def finetune(model, tok, records, lr: float, steps: int, batch_size: int, seed: int = 0,
             benign_records=None, benign_mix: float = 0.0, warmup: int = 0, schedule: str = "constant"):
    """SFT with AdamW (no clipping: an attacker has no reason to be gentle).

    ``benign_mix``: fraction of each batch drawn from ``benign_records`` (a realistic attacker
    mixes ordinary data into the harmful set to keep the model useful).
    """
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, warmup, schedule))
    rng = random.Random(f"attack-{seed}")
    n_bgn = round(batch_size * benign_mix) if benign_records else 0
    for _ in range(steps):
        recs = rng.sample(records, batch_size - n_bgn) + (rng.sample(benign_records, n_bgn) if n_bgn else [])
        batch = world.collate(tok, recs)
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model


def attack_suite(model, tok, lrs=ATTACK["lrs"], steps: int = ATTACK["steps"], batch_size: int = ATTACK["batch_size"],
                 n_adv: int = ATTACK["n_adv"], benign_mix: float = ATTACK["benign_mix"], warmup: int = ATTACK["warmup"],
                 schedule: str = ATTACK["schedule"], eval_bgn=None, eval_adv=None, seed: int = 0,
                 log=None) -> list[dict]:
    """Fine-tune a copy of ``model`` on D_adv (plus ``benign_mix`` benign data) at each lr; report both judges."""
    eval_bgn = eval_bgn if eval_bgn is not None else world.eval_benign()
    eval_adv = eval_adv if eval_adv is not None else world.eval_forbidden()
    adv = world.d_adv(n_adv, seed=1000 + seed)  # the attacker's data, distinct from the defender's
    bgn = world.d_bgn(n_adv, seed=1000 + seed) if benign_mix > 0 else None
    out = []
    for lr in lrs:
        t0 = time.time()
        attacked = finetune(copy.deepcopy(model), tok, adv, lr, steps, batch_size, seed=seed, benign_records=bgn,
                            benign_mix=benign_mix, warmup=warmup, schedule=schedule)
        row = {"lr": lr, "steps": steps, "benign_mix": benign_mix,
               "harmful_success": world.harmful_success(attacked, tok, eval_adv),
               "benign_accuracy_after": world.benign_accuracy(attacked, tok, eval_bgn)}
        if log:
            log(f"attack lr={lr:g}: harmful {row['harmful_success']:.3f} benign {row['benign_accuracy_after']:.3f}"
                f" ({time.time() - t0:.0f}s)")
        out.append(row)
        del attacked
    return out
