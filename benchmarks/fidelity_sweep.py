"""Estimator fidelity on trained and random tiny models: the tables behind the default policy.

For each tiny family (llama, gpt2, qwen2 with 2 KV heads, gpt_neox), trained
(``seamharden.tiny.build_trained_tiny_model``: hidden 64, 2 layers, BPE vocab 400, 150
AdamW steps at lr 3e-3 on generated sentences, deterministic) and random (the same shape,
seed 0), weight dtype (fp32, bf16) and estimator policy: the cosine between the
estimator's grad of sim and the fp64 double backward on the same (upcast) weights,
measured exactly as ``seamharden fidelity --seed S`` does (``measure_fidelity``: 4
built-in adversarial and benign rows, 48 tokens), minimum over seeds 0, 1, 2; and the
largest self-check figure (``consistency``) over the seeds where one is reported.
Prints markdown tables; ``--json`` prints the rows instead.

    python benchmarks/fidelity_sweep.py --threads 1
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time

import torch

from seamharden.core.estimator import CONSISTENCY_THRESHOLD, StepPolicy
from seamharden.fidelity import build_batches, measure_fidelity
from seamharden.tiny import FAMILIES, TRAINED_VOCAB, build_tiny_tokenizer, trained_and_random_models

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SEEDS = (0, 1, 2)
# (label, policy, perturbed or HVP passes per step: an extra fwd+bwd each; an HVP costs ~4)
POLICIES = [
    ("hvp (default)", StepPolicy("relative", "hvp"), "2 HVP (~8)"),
    ("central, checked", StepPolicy("relative", "central"), "8"),
    ("central", StepPolicy("relative", "central", check=False), "4"),
    ("forward, checked", StepPolicy("relative", "forward"), "4"),
    ("forward", StepPolicy("relative", "forward", check=False), "2"),
]
OLD_DEFAULT = {"fp32": StepPolicy("relative", "forward", relative_step=1e-4, check=False),
               "bf16": StepPolicy("relative", "forward", relative_step=2e-3, check=False)}
"""The default before issue 14 (forward, rho 1e-4 in fp32 and 2e-3 in bf16, no check)."""


def sweep(families=FAMILIES, dtypes=tuple(DTYPES), seeds=SEEDS, labels=None) -> list[dict]:
    tokenizer = build_tiny_tokenizer(TRAINED_VOCAB)
    batches = {seed: build_batches(tokenizer, examples=4, max_length=48, seed=seed) for seed in seeds}
    rows = []
    for family, weights, base in trained_and_random_models(families, tokenizer):
        for dtype_name in dtypes:
            model = copy.deepcopy(base).to(DTYPES[dtype_name])
            old = f"old default (forward, rho {OLD_DEFAULT[dtype_name].relative_step:g})"
            old_checked = dataclasses.replace(OLD_DEFAULT[dtype_name], check=True)
            policies = [*POLICIES, (old, OLD_DEFAULT[dtype_name], "2"), (old + ", checked", old_checked, "4")]
            for label, policy, passes in policies:
                if labels is not None and label not in labels:
                    continue
                reports = [measure_fidelity(model, *batches[seed], policy, seed).report for seed in seeds]
                checks = [r.consistency for r in reports if not math.isnan(r.consistency)]
                rows.append({
                    "family": family, "weights": weights, "dtype": dtype_name, "policy": label, "passes": passes,
                    "difference": policy.difference, "relative_step": reports[0].relative_step,
                    "min_cosine": min(r.cosine for r in reports), "cosines": [r.cosine for r in reports],
                    "max_consistency": max(checks) if checks else None,
                    "flagged": [c > CONSISTENCY_THRESHOLD for c in checks] if checks else None,
                    "min_applied_cosine": min(r.applied_cosine for r in reports),
                })
    return rows


def markdown(rows: list[dict]) -> str:
    """One table per dtype: min cosine over seeds (max consistency) per policy and model."""
    columns = list(dict.fromkeys((r["family"], r["weights"]) for r in rows))
    out = []
    for dtype_name in dict.fromkeys(r["dtype"] for r in rows):
        seeds = len(next(r for r in rows if r["dtype"] == dtype_name)["cosines"])
        out.append(f"\n### {dtype_name}: min cosine over {seeds} seed(s) "
                   "(max self-check figure where checked)\n")
        out.append("| policy | extra passes | " + " | ".join(f"{f} {w}" for f, w in columns) + " | min |")
        out.append("|---|---|" + "---|" * (len(columns) + 1))
        for label in dict.fromkeys(r["policy"] for r in rows if r["dtype"] == dtype_name):
            cells = {(r["family"], r["weights"]): r for r in rows if r["dtype"] == dtype_name and r["policy"] == label}
            body = []
            for key in columns:
                r = cells[key]
                check = f" ({r['max_consistency']:.2f})" if r["max_consistency"] is not None else ""
                body.append(f"{r['min_cosine']:.4f}{check}")
            worst = min(r["min_cosine"] for r in cells.values())
            out.append(f"| {label} | {next(iter(cells.values()))['passes']} | " + " | ".join(body)
                       + f" | {worst:.4f} |")
    return "\n".join(out)


def self_check_table(rows: list[dict], floor: float = 0.95) -> str:
    """How the self-check sorted the checked estimates: bad = cosine below ``floor``."""
    counts = {(bad, flagged): 0 for bad in (True, False) for flagged in (True, False)}
    for r in rows:
        for cosine, flagged in zip(r["cosines"], r["flagged"] or [], strict=False):
            counts[(cosine < floor, flagged)] += 1
    title = f"Self-check (threshold {CONSISTENCY_THRESHOLD:g}) on every checked estimate (seed x model x dtype)"
    return (f"\n### {title}\n\n"
            f"| | flagged | passed |\n|---|---|---|\n"
            f"| cosine < {floor:g} | {counts[(True, True)]} | {counts[(True, False)]} |\n"
            f"| cosine >= {floor:g} | {counts[(False, True)]} | {counts[(False, False)]} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--policies", nargs="+", default=None, metavar="LABEL",
                        help="only these policy labels, e.g. 'central, checked' (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--self-check", action="store_true",
                        help="also print how the self-check sorted the checked estimates (per seed)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = sweep(args.families, args.dtypes, tuple(args.seeds), args.policies)
    if args.json:
        print(json.dumps(rows))
    else:
        print(markdown(rows))
        if args.self_check:
            print(self_check_table(rows))
        print(f"\n{len(rows) * len(args.seeds)} estimates in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
