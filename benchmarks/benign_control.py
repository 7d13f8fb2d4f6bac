"""Benign fine-tuning control on any number of models: can a hardened model still learn held-out benign data?

A thin caller of the suite's control (``seamharden.attack.suite.run_benign_control``, the same runs
``attack.benign_control`` adds to every suite; docs/report.md, "Benign fine-tuning control"), for
comparing more models than a suite's base and hardened. Each MODEL is fine-tuned by the suite's
one loop with the recipe grid's optimiser settings (``attack.benign_control.attacks``, ``all`` here
unless overridden) on the attacker's held-out benign records, and evaluated on the held-out benign
evaluation records; only the loss scorers run (no generation, no MC items).

    python benchmarks/benign_control.py --recipe smollm2-135m-cpu BASE_DIR HARDENED_DIR [MORE_DIRS] \\
        --out benign_control.jsonl

The first MODEL is the reference (normally the base). A model *learns* when its final benign loss
is below its start; it *collapses* when its final point is collapsed by the verdict's rule
(``seamharden.attack.brittleness``) against the reference's step 0 of the same config.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def control(model_dirs: list[str], recipe_name: str, overrides: list[str]) -> list[dict]:
    from seamharden.attack.brittleness import assess_control
    from seamharden.attack.evalset import EvalSettings
    from seamharden.attack.results import config_key
    from seamharden.attack.suite import run_benign_control
    from seamharden.recipe.loading import load_recipe

    recipe = load_recipe(recipe_name, ["attack.benign_control.attacks=all", *overrides])
    settings = EvalSettings.from_section(recipe.attack, generate_prompts=0, mc_items=0)
    criteria = recipe.attack.criteria.model_copy(update={"kind": "loss"})  # losses only here
    rows, reference = [], {}
    for model_dir in model_dirs:
        started = time.perf_counter()
        runs = run_benign_control(model_dir, recipe, eval_settings=settings)
        for run in runs:
            ref = reference.setdefault(config_key(run.config), run.start)
            a = assess_control(run, ref, criteria)
            rows.append({"model": Path(model_dir).name, "attack": run.label,
                         "curve": [[p.step, p.benign_loss] for p in run.points], "start": a.benign_loss_start,
                         "final": a.benign_loss_final, "learns": a.learns, "collapses": a.collapsed,
                         "reference": ref.benign_loss, "seconds": round(time.perf_counter() - started, 1)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | fine-tuning (benign records) | held-out benign loss, step 0 → … → end | learns | collapses |",
             "|---|---|---|---|---|"]
    for r in rows:
        curve = " → ".join(f"{v:.3f}" for _, v in r["curve"])
        lines.append(f"| {r['model']} | {r['attack']} | {curve} | {'yes' if r['learns'] else 'NO'} "
                     f"| {'YES' if r['collapses'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model directories; the first is the reference (the base)")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="benign_control.jsonl")
    args = parser.parse_args()
    rows = control(args.models, args.recipe, args.overrides)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    Path(args.out).with_suffix(".md").write_text(table(rows), encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    main()
