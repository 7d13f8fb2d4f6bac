"""Run the toy demo (``run_demo``: protect with the ``toy`` recipe, the code path of ``seamharden demo``) over seeds.

    python benchmarks/demo_seeds.py --seeds 0 1 2 [--label beta0 seam.beta=0] [--quick] [--cache-dir DIR]
        [--out results.jsonl]

Every KEY=VALUE after ``--label NAME`` is a recipe override (``seam.beta=0`` is the beta ablation,
``utility.anchor=0`` hardening without the anchor). Appends one JSON line per seed to ``--out``
(the demo's JSON, the verdict, the kept step and timings), then prints a markdown table of harmful
success / benign accuracy at each attack's first success (and its step) and the verdict.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from seamharden.demo.run import DemoPlan, run_demo


def _cells(side: dict) -> str:
    """Harmful success / benign accuracy at each attack's first success (its step), as markdown table cells."""
    return " | ".join(f"{a['harmful_success']:.2f} / {a['benign_accuracy_after']:.3f} ({a['steps']})"
                      for a in side["attacks"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--label", default="beta1", help="name of this setting in the table")
    ap.add_argument("overrides", nargs="*", help="recipe KEY=VALUE overrides of the toy recipe")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=Path("~/.cache/seamharden/demo"))
    ap.add_argument("--out", type=Path, default=Path("demo_seeds.jsonl"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        plan = DemoPlan.make(seed=seed, quick=args.quick, overrides=args.overrides)
        r = run_demo(args.cache_dir.expanduser(), plan)
        line = {"label": args.label, "overrides": args.overrides, **r}
        with args.out.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        status = r["verdict"]["status"]
        rows.append(f"| {seed} | base | {r['base']['benign_accuracy_before']:.3f} | {_cells(r['base'])} | |")
        rows.append(f"| {seed} | hardened ({args.label}, kept step {r['hardened']['kept_step']}) | "
                    f"{r['hardened']['benign_accuracy_before']:.3f} | {_cells(r['hardened'])} | {status} |")
        print(rows[-2], rows[-1], sep="\n", flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
