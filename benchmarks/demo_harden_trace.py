"""Trace the demo's hardening on one toy base: benign loss and cos(g_a, g_b) every ``--every`` steps.

    python benchmarks/demo_harden_trace.py --seed 0 --steps 150 --beta 1 --anchor 0

Shows what docs/demo.md reports on the anchor: with ``--anchor 0`` and beta 1 the benign loss
falls towards zero with no benign training; with the anchor it stays near the base's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from seamharden.demo import harden, pretrain


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--anchor", type=float, default=harden.HARDEN["anchor"])
    ap.add_argument("--every", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=Path("~/.cache/seamharden/demo"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = pretrain.load_base(pretrain.ensure_base_model(args.cache_dir.expanduser(), seed=args.seed))
    torch.manual_seed(args.seed)
    hist = harden.harden(model, tok, steps=args.steps, anchor=args.anchor, seed=args.seed, beta=args.beta)
    kept = [i + 1 for i, h in enumerate(hist) if h.get("kept")]
    print(f"seed {args.seed} beta {args.beta:g} anchor {args.anchor:g}: last kept step {kept[-1] if kept else 0}")
    print("benign loss", [round(h["loss_bgn"], 3) for h in hist[::args.every]])
    print("cos(g_a, g_b)", [round(h["cosine"], 2) for h in hist[::args.every]])


if __name__ == "__main__":
    main()
