"""Attack the toy bases only (no hardening): which attack lrs teach each base and leave its benign skill.

    python benchmarks/demo_base_attacks.py --seeds 0 1 2 --lrs 1e-4 2e-4 5e-4 1e-3 [--check-every 5] [--fixed-length]

One markdown row per seed: harmful success / benign accuracy after each attack (steps it ran),
with the FULL plan's eval sets and the attacker data of ``seamharden demo`` (docs/demo.md).
``--fixed-length`` runs every attack the suite's ``max_steps`` (the base side of the length control).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from demo_seeds import _cells  # the sibling script's table cells (benchmarks/ is on sys.path when run)

from seamharden.demo import attack, pretrain, world
from seamharden.demo.run import FULL


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lrs", type=float, nargs="+", default=list(attack.ATTACK["lrs"]))
    ap.add_argument("--check-every", type=int, default=attack.ATTACK["check_every"])
    ap.add_argument("--fixed-length", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=Path("~/.cache/seamharden/demo"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        model, tok = pretrain.load_base(pretrain.ensure_base_model(args.cache_dir.expanduser(), seed=seed))
        rows = attack.attack_suite(model, tok, lrs=args.lrs, check_every=args.check_every,
                                   success=2.0 if args.fixed_length else attack.ATTACK["success"],
                                   eval_bgn=world.eval_benign(FULL["n_eval_benign"], seed),
                                   eval_adv=world.eval_forbidden(FULL["n_eval_forbidden"], seed), seed=seed)
        print(f"| {seed} | {_cells({'attacks': rows})} |", flush=True)


if __name__ == "__main__":
    main()
