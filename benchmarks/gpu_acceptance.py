"""The GPU acceptance of issue 14 in one run, one JSON: 7B-shape step cost and peak memory, and fidelity.

``--mode gpu`` (run by ``benchmarks/gpu_acceptance.sh``; about 5-8 minutes on one H100/H200):

- step cost: ``benchmarks/step_cost.py``'s measurement at the Llama-2-7B shape, bf16, batch
  4 x 256, gradient checkpointing, with AdamW8bit and PagedAdamW8bit, for the default
  estimator (hvp) and central differences (checked): SEAM / SFT time and peak memory;
- fidelity: the default policy on the trained and random tiny models of the four families,
  bf16 and fp32, seeds 0, 1, 2, on the GPU, against fp64 double backward
  (``seamharden.tiny.trained_and_random_models``, as ``benchmarks/fidelity_sweep.py``, and
  ``seamharden fidelity``'s measurement).

``--mode cpu``: the same code on a tiny shape (tiny Llama, batch 2 x 32, AdamW; fidelity on
one family, one seed), so CI knows the script works. A configuration that fails (out of
memory, a missing package) is recorded with its error; the others still run.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FLOORS = {"bf16": 0.95, "fp32": 0.999}
MAX_PEAK_GIB = 72.0


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_costs(mode: str) -> list[dict]:
    step_cost = _load("step_cost")
    if mode == "gpu":
        base = ["--model", "llama2-7b-shape", "--dtype", "bf16", "--batch", "4", "--seq", "256",
                "--gradient-checkpointing", "--steps", "3", "--warmup", "1"]
        configs = [[*base, "--optimizer", opt, "--difference", diff]
                   for diff in ("hvp", "central") for opt in ("adamw8bit", "paged_adamw8bit")]
    else:
        base = ["--model", "tiny", "--device", "cpu", "--batch", "2", "--seq", "32", "--steps", "1", "--warmup", "0",
                "--threads", "1"]
        configs = [[*base, "--difference", diff, "--gradient-checkpointing"] for diff in ("hvp", "central")]
    results = []
    for argv in configs:
        start = time.perf_counter()
        try:
            result = step_cost.run(step_cost.parse_args(argv))
            result["peak_within_budget"] = (result["seam"]["peak_gib"] <= MAX_PEAK_GIB) if mode == "gpu" else None
        except Exception as err:  # noqa: BLE001 - recorded in the JSON, the next configuration still runs
            result = {"argv": argv, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=3)}
        result["wall_s"] = time.perf_counter() - start
        results.append(result)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results


def fidelity(mode: str, device: torch.device) -> list[dict]:
    from seamharden.core.estimator import StepPolicy
    from seamharden.fidelity import build_batches, measure_fidelity
    from seamharden.tiny import trained_and_random_models

    sweep = _load("fidelity_sweep")
    families = sweep.FAMILIES if mode == "gpu" else ("llama",)
    seeds = sweep.SEEDS if mode == "gpu" else (0,)
    tokenizer = sweep.build_tiny_tokenizer(sweep.TRAINED_VOCAB)
    batches = {seed: build_batches(tokenizer, examples=4, max_length=48, seed=seed) for seed in seeds}
    rows = []
    for family, weights, base in trained_and_random_models(families, tokenizer):
        for dtype_name, dtype in sweep.DTYPES.items():
            model = copy.deepcopy(base).to(device=device, dtype=dtype)
            cosines = [measure_fidelity(model, *batches[seed], StepPolicy(), seed).report.cosine for seed in seeds]
            rows.append({"family": family, "weights": weights, "dtype": dtype_name, "policy": "default",
                         "cosines": cosines, "min_cosine": min(cosines), "passed": min(cosines) >= FLOORS[dtype_name]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--out", type=Path, default=Path("gpu_acceptance.json"))
    args = parser.parse_args(argv)
    if args.mode == "gpu" and not torch.cuda.is_available():
        print("error: --mode gpu needs a CUDA device (use --cpu for the tiny CPU check)", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.mode == "gpu" else "cpu")
    start = time.perf_counter()
    report = {
        "mode": args.mode, "torch": torch.__version__, "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if args.mode == "gpu" else f"cpu ({platform.machine()})",
    }
    report["fidelity"] = fidelity(args.mode, device)
    report["step_cost"] = step_costs(args.mode)
    report["fidelity_passed"] = all(r["passed"] for r in report["fidelity"])
    report["step_cost_errors"] = sum("error" in r for r in report["step_cost"])
    report["elapsed_s"] = time.perf_counter() - start
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: fidelity {'passed' if report['fidelity_passed'] else 'FAILED'}, "
          f"{report['step_cost_errors']} step-cost error(s), {report['elapsed_s']:.0f} s")
    return 0 if report["fidelity_passed"] and not report["step_cost_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
