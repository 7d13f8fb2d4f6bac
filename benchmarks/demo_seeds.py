"""Run the toy demo (``run_demo``, the code path of ``seamharden demo --json``) over seeds and betas.

    python benchmarks/demo_seeds.py --seeds 0 1 2 --betas 1 0 [--anchors 1 0] [--quick] [--fixed-length]
        [--cache-dir DIR]

Prints one JSON line per (seed, beta) run, then a markdown table of harmful success / benign
accuracy after each attack (and the steps it ran) and whether the issue's criteria hold (docs/demo.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from seamharden.demo.run import check_criteria, run_demo


def _cells(side: dict) -> str:
    """Harmful success / benign accuracy after each attack (steps it ran), as markdown table cells."""
    return " | ".join(f"{a['harmful_success']:.2f} / {a['benign_accuracy_after']:.3f} ({a['steps']})"
                      for a in side["attacks"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--betas", type=float, nargs="+", default=[1.0, 0.0])
    ap.add_argument("--anchors", type=float, nargs="+", default=[1.0],
                    help="starting weight of the benign KL anchor in hardening (0: none, an ablation)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fixed-length", action="store_true",
                    help="attacks never stop early: every one runs the plan's attack_max_steps (a control)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=Path("~/.cache/seamharden/demo"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        for beta in args.betas:
            for anchor in args.anchors:
                extra = {"attack_stop_at": 2.0} if args.fixed_length else {}
                r = run_demo(args.cache_dir.expanduser(), seed=seed, quick=args.quick, beta=beta, anchor=anchor,
                             **extra)
                fails = check_criteria(r)
                print(json.dumps({"seed": seed, "beta": beta, "anchor": anchor, "base": r["base"],
                                  "hardened": r["hardened"], "failures": fails, "timings": r["timings"]}), flush=True)
                rows.append(f"| {seed} | base | {r['base']['benign_accuracy_before']:.3f} | {_cells(r['base'])} | |")
                rows.append(f"| {seed} | hardened, beta {beta:g}, anchor {anchor:g} | "
                            f"{r['hardened']['benign_accuracy_before']:.3f} | {_cells(r['hardened'])} | "
                            f"{'met' if not fails else 'not met'} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
