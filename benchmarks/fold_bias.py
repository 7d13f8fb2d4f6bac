"""What seam.unlearn_pass=perturbed costs in accuracy: the step's gradient, own vs perturbed, against the exact one.

For each tiny family (trained and random, as in fidelity_sweep.py), one ``seam_step`` in fp32 with an unchecked
finite difference at the default step, once with grad L_ul taken at theta (``own``) and once in the perturbed
adversarial pass (``perturbed``), is compared with the exact step gradient (fp64 copy, ``hvp``): the cosine, and
the error's norm relative to the norm of the exact beta * grad L_sd term (what the estimate is for). If the fold
mattered, ``perturbed`` would sit visibly further from the exact step than ``own``.

    python benchmarks/fold_bias.py [--difference forward|central] [--families llama ...] [--betas 1 8] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch

from seamharden.core.fidelity import agreement
from seamharden.core.step import SeamConfig, seam_step, trainable_parameters
from seamharden.fidelity import build_batches
from seamharden.tiny import FAMILIES, TRAINED_VOCAB, build_tiny_tokenizer, trained_and_random_models


def _step_gradient(model, batches, cfg: SeamConfig) -> list[torch.Tensor]:
    """p.grad after one seam_step from zero, fp64 copies."""
    params = trainable_parameters(model)
    for p in params:
        p.grad = None
    seam_step(model, *batches, cfg)
    return [p.grad.detach().double().clone() for p in params]


def _norm(xs) -> float:
    return sum((x * x).sum() for x in xs).sqrt().item()


def measure(families=FAMILIES, betas=(1.0, 8.0), difference: str = "forward", seed: int = 0) -> list[dict]:
    tokenizer = build_tiny_tokenizer(TRAINED_VOCAB)
    adv, bgn = build_batches(tokenizer, seed=seed)
    aln = build_batches(tokenizer, seed=seed + 1)[0]  # any labelled batch serves as L_up's
    rows = []
    for family, weights, base in trained_and_random_models(families, tokenizer, seed):
        for beta in betas:
            exact = _step_gradient(copy.deepcopy(base).double(), (adv, aln, bgn), SeamConfig(beta=beta))
            without_sd = _step_gradient(copy.deepcopy(base).double(), (adv, aln, bgn), SeamConfig(beta=0.0))
            sd_norm = _norm([e - z for e, z in zip(exact, without_sd, strict=True)])
            row = {"family": family, "weights": weights, "beta": beta, "difference": difference}
            for unlearn_pass in ("own", "perturbed"):
                cfg = SeamConfig(beta=beta, difference=difference, self_check=False, unlearn_pass=unlearn_pass)
                got = _step_gradient(copy.deepcopy(base), (adv, aln, bgn), cfg)
                error = _norm([g - e for g, e in zip(got, exact, strict=True)])
                row[unlearn_pass] = {"cosine": agreement(got, exact)["cosine"], "error_over_sd": error / sd_norm}
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| family | weights | beta | own: cosine / error over L_sd term "
             "| perturbed: cosine / error over L_sd term |",
             "|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k]['cosine']:.6f} / {r[k]['error_over_sd']:.5f}" for k in ("own", "perturbed")]
        lines.append(f"| {r['family']} | {r['weights']} | {r['beta']:g} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--betas", nargs="+", type=float, default=[1.0, 8.0])
    parser.add_argument("--difference", choices=["forward", "central"], default="forward")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = measure(args.families, tuple(args.betas), args.difference, args.seed)
    took = time.perf_counter() - start
    print(json.dumps(rows) if args.json else f"{markdown(rows)}\n\n{len(rows)} rows in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
