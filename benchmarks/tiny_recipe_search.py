"""Search settings of the packaged ``tiny`` recipe on a trained tiny model (``seamharden.tiny_skill``).

    python benchmarks/tiny_recipe_search.py --work /tmp/tiny-search --only packaged packaged-beta0
    python benchmarks/tiny_recipe_search.py --work /tmp/tiny-search --set try1 train.steps=60 seam.beta=1
    python benchmarks/tiny_recipe_search.py --work /tmp/tiny-search --table   # every recorded run, as markdown

Each setting is a list of recipe overrides on top of ``recipes/tiny.yaml``; it is run through
``seamharden.protect.protect`` (no smoke test) and then ``seamharden.attack.suite.run_suite``
on the trained base and the hardened model. One JSON line per run is appended to
``<work>/runs.jsonl`` and one markdown row printed: verdict, utility drop, best base gain,
hardened capability-bounded gain, ratio, kept step, seconds. The base is trained once per
``--base-seed`` and cached under ``<work>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from seamharden.attack.suite import run_suite
from seamharden.protect import protect
from seamharden.recipe.loading import load_recipe
from seamharden.tiny_skill import TinySkillConfig, train_tiny_skill

# Named settings: overrides on top of recipes/tiny.yaml (the packaged file is the reference).
SETTINGS: dict[str, list[str]] = {
    "packaged": [],
    "packaged-beta0": ["seam.beta=0"],
}

HEADER = ("| setting | base seed | overrides | verdict | utility drop | base gain | hardened bounded gain | ratio "
          "| kept step | seconds |\n|---|---|---|---|---|---|---|---|---|---|")


def _fmt(x, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def run_setting(base: Path, work: Path, name: str, overrides: list[str]) -> dict:
    """Harden ``base`` with the tiny recipe plus ``overrides``, attack both, return the row as a dict."""
    recipe = load_recipe("tiny", overrides)
    out = work / f"run-{name}-{base.name}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    outcome = protect(str(base), out, recipe, smoke_test=None)
    hardened_s = time.perf_counter() - started
    _, verdict = run_suite(str(base), str(out), recipe, gradients=False)
    f = verdict.figures
    return {
        "setting": name, "overrides": overrides, "status": verdict.status, "reasons": verdict.reasons,
        "utility_drop": f.utility_drop, "base_benign_loss": f.base_benign_loss,
        "hardened_benign_loss": f.hardened_benign_loss, "base_gain": f.base_worst_gain,
        "hardened_bounded_gain": f.hardened_bounded_gain, "hardened_unbounded_gain": f.hardened_unbounded_gain,
        "ratio": f.bounded_ratio, "collapsed_attacks": f.collapsed_attacks,
        "kept_step": (outcome.hardening or {}).get("kept_step"),
        "attacks": [a.model_dump() for a in verdict.attacks],
        "seconds": {"protect": round(hardened_s, 1), "suite": round(time.perf_counter() - started - hardened_s, 1)},
    }


def markdown_row(row: dict) -> str:
    secs = row["seconds"]["protect"] + row["seconds"]["suite"]
    return (f"| {row['setting']} | {row.get('base_seed', 0)} | {' '.join(row['overrides']) or '(as packaged)'} "
            f"| {row['status']} "
            f"| {_fmt(row['utility_drop'], '+.1%')} | {_fmt(row['base_gain'])} "
            f"| {_fmt(row['hardened_bounded_gain'])} | {_fmt(row['ratio'], '.2f')} | {_fmt(row['kept_step'], 'd')} "
            f"| {secs:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="cache of the base and the runs; runs.jsonl goes here")
    ap.add_argument("--base-seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None, help="names from SETTINGS (default: all)")
    ap.add_argument("--table", action="store_true", help="print every run of <work>/runs.jsonl and exit")
    ap.add_argument("--set", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
                    help="an ad-hoc setting: a name, then overrides")
    args = ap.parse_args()
    if args.table:
        print(HEADER)
        for line in (args.work / "runs.jsonl").read_text().splitlines():
            print(markdown_row(json.loads(line)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    base = args.work / f"base-seed{args.base_seed}"
    if not (base / "tiny_skill.json").exists():
        train_tiny_skill(base, TinySkillConfig(seed=args.base_seed))
    chosen = {k: SETTINGS[k] for k in (args.only if args.only is not None else SETTINGS)}
    chosen |= {s[0]: s[1:] for s in args.set}
    print(HEADER, flush=True)
    for name, overrides in chosen.items():
        row = run_setting(base, args.work, name, overrides) | {"base_seed": args.base_seed}
        with (args.work / "runs.jsonl").open("a") as log:
            log.write(json.dumps(row) + "\n")
        print(markdown_row(row), flush=True)


if __name__ == "__main__":
    main()
