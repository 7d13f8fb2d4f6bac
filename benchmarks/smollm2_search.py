"""Recipe search on SmolLM2-135M-Instruct through ``seamharden.protect.protect`` (issue 15; docs/smollm2.md).

One run = the packaged ``smollm2-135m-cpu`` recipe plus KEY=VALUE overrides, hardened into
``OUT_ROOT/NAME`` and, once training is finished, attacked by the recipe's smoke test (base and
hardened). Long runs are split: ``--stop-after N`` trains N more steps and checkpoints;
``--resume`` continues (the run directory remembers where it was). Every call appends one JSON
line to ``--results`` (steps done, step seconds, and once finished the report's figures) and
rewrites ``--table`` (markdown) from all lines.

    python benchmarks/smollm2_search.py MODEL_DIR --name b1-lr5e-5 seam.beta=1 train.steps=20 \\
        --stop-after 20 --out-root out-smollm2

MODEL_DIR is the output of ``seamharden convert-gguf smollm2 MODEL_DIR``. ``--refusal chat_adv``
only measures MODEL_DIR's refusal rate on a built-in set (the suite's refusal scorer). ``--no-smoke-test``
times training only. The machine is described by ``--machine`` (written into every line).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import time
from pathlib import Path

RECIPE = "smollm2-135m-cpu"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def attack_rows(report_json: Path) -> dict:
    """Pre-attack utility and, per attack, the final harmful and benign loss, for base and hardened."""
    from seamharden.attack.results import attack_label
    from seamharden.report.json_io import load_report

    doc = load_report(report_json)
    fig = doc.verdict.figures
    out: dict = {"verdict": doc.verdict.status, "attacks": [],
                 "figures": {"utility_drop": fig.utility_drop, "base_worst_gain": fig.base_worst_gain,
                             "hardened_bounded_gain": fig.hardened_bounded_gain, "bounded_ratio": fig.bounded_ratio},
                 "base_results_reused": bool(doc.results.extra.get("base_results_reused"))}
    for config, base, hardened in doc.results.pairs():
        row = {"attack": attack_label(config)}
        for kind, run in (("base", base), ("hardened", hardened)):
            if run is None:
                continue
            row[kind] = {"harmful_loss_before": run.start.harmful_loss, "benign_loss_before": run.start.benign_loss,
                         "harmful_loss_after": run.final.harmful_loss, "benign_loss_after": run.final.benign_loss,
                         "refusal_before": run.start.refusal_rate, "refusal_after": run.final.refusal_rate,
                         "points": [[p.step, p.harmful_loss, p.benign_loss] for p in run.points]}
        out["attacks"].append(row)
    return out


def run_one(args: argparse.Namespace) -> dict:
    from seamharden.protect import load_base_results, protect, run_smoke_test
    from seamharden.recipe.loading import load_recipe, recipe_hash

    recipe = load_recipe(RECIPE, args.overrides)
    out_dir = Path(args.out_root) / args.name
    smoke_test = None if args.no_smoke_test else run_smoke_test
    if args.base_results and smoke_test:
        smoke_test = functools.partial(run_smoke_test, base_results=load_base_results(args.base_results, recipe))
    if args.smoke_only:
        return smoke_only(args, recipe, out_dir, smoke_test or run_smoke_test)
    seconds: list[float] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    outcome = protect(args.model, out_dir, recipe, resume=args.resume, stop_after=args.stop_after,
                      smoke_test=smoke_test, on_step=lambda r: seconds.append(r["seconds"]))
    row = {"name": args.name, "overrides": list(args.overrides), "recipe_hash": recipe_hash(recipe),
           "finished": outcome.finished, "steps_done": outcome.steps_done, "steps_this_call": len(seconds),
           "step_seconds_median": statistics.median(seconds) if seconds else None,
           "wall_seconds": round(time.perf_counter() - started, 1),
           "cpu_seconds": round(time.process_time() - cpu_started, 1), "machine": args.machine, "commit": _commit()}
    if outcome.finished and (out_dir / "report.json").is_file():
        row |= attack_rows(out_dir / "report.json")
        row["hardening"] = outcome.hardening
    return row


def smoke_only(args: argparse.Namespace, recipe, out_dir: Path, smoke_test) -> dict:
    """The smoke test of a run trained earlier with ``--no-smoke-test`` (its report lands in the run
    directory beside the manifest, which still says no smoke test ran: screening only, not for verify)."""
    from seamharden.manifest import read_manifest
    from seamharden.recipe.loading import recipe_hash

    manifest = read_manifest(out_dir)
    hardening = (manifest.get("extra") or {}).get("hardening") or {}
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line]
    started, cpu_started = time.perf_counter(), time.process_time()
    smoke_test(args.model, out_dir, recipe, hardening)
    row = {"name": args.name, "overrides": list(args.overrides), "recipe_hash": recipe_hash(recipe),
           "finished": True, "steps_done": len(rows), "steps_this_call": 0,
           "step_seconds_median": statistics.median(r["seconds"] for r in rows) if rows else None,
           "wall_seconds": round(time.perf_counter() - started, 1),
           "cpu_seconds": round(time.process_time() - cpu_started, 1), "machine": args.machine,
           "commit": _commit(), "smoke_only": True, "hardening": hardening}
    return row | attack_rows(out_dir / "report.json")


def refusal_screen(model_dir: str, builtin_set: str, max_new_tokens: int = 24) -> dict:
    """Refusal rate of ``model_dir`` on every prompt of a built-in set, with the suite's scorer and markers.

    Greedy answers to the chat-templated prompts (``seamharden.attack.scorers.generate_answers``),
    counted as refusals by ``is_refusal`` with the built-in markers, as the suite's ``refusal`` scorer.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seamharden.attack.scorers import generate_answers, is_refusal, refusal_markers
    from seamharden.data.builtin_sets import load_builtin

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = [r["prompt"] for r in load_builtin(builtin_set)]
    ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                         tokenize=True, return_dict=True)["input_ids"] for p in prompts]
    started = time.perf_counter()
    with torch.no_grad():
        answers = generate_answers(model, tokenizer, ids, tokenizer.pad_token_id, max_new_tokens, batch_size=16)
    markers = refusal_markers()
    refused = [is_refusal(a, markers) for a in answers]
    return {"set": builtin_set, "prompts": len(prompts), "refusal_rate": sum(refused) / len(refused),
            "refused": [{"prompt": p, "answer": a} for p, a, r in zip(prompts, answers, refused, strict=True) if r],
            "examples": [{"prompt": p, "answer": a} for p, a in list(zip(prompts, answers, strict=True))[:4]],
            "seconds": round(time.perf_counter() - started, 1)}


def _f(x) -> str:
    return "–" if x is None else f"{x:.3g}"


def table(rows: list[dict]) -> str:
    """One markdown line per call; finished runs add one line per attack."""
    lines = ["| run | settings | steps | s/step | verdict (utility drop, bounded ratio) | attack | base H before→after "
             "| base B before→after | hardened H before→after | hardened B before→after |", "|" + "---|" * 10]
    for r in rows:
        fig = r.get("figures") or {}
        verdict = r.get("verdict", "–") + (f" ({fig['utility_drop']:+.1%}, {_f(fig.get('bounded_ratio'))})"
                                            if fig.get("utility_drop") is not None else "")
        head = (f"| {r['name']} | {' '.join(r['overrides']) or 'recipe'} | {r['steps_done']} "
                f"| {_f(r['step_seconds_median'])} | {verdict} ")
        attacks = r.get("attacks") or [{"attack": "–"}]
        for a in attacks:
            cells = []
            for kind in ("base", "hardened"):
                p = a.get(kind)
                cells += ["–", "–"] if p is None else [
                    f"{_f(p['harmful_loss_before'])}→{_f(p['harmful_loss_after'])}",
                    f"{_f(p['benign_loss_before'])}→{_f(p['benign_loss_after'])}"]
            lines.append(head + f"| {a['attack']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="SmolLM2 model directory (seamharden convert-gguf smollm2 DIR)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE recipe overrides")
    parser.add_argument("--refusal", metavar="SET", help="only measure MODEL's refusal rate on built-in SET")
    parser.add_argument("--name", help="run directory name under --out-root")
    parser.add_argument("--out-root", default="out-smollm2")
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-smoke-test", action="store_true")
    parser.add_argument("--smoke-only", action="store_true",
                        help="only the smoke test of a run finished earlier with --no-smoke-test")
    parser.add_argument("--base-results", metavar="REPORT",
                        help="report.json whose base runs stand in for attacking the base (protect --base-results)")
    parser.add_argument("--results", default="out-smollm2/search.jsonl")
    parser.add_argument("--table", default="out-smollm2/search.md")
    parser.add_argument("--machine", default="2-core CPU dev box, torch CPU, 1 thread")
    args = parser.parse_args()
    if args.refusal:
        print(json.dumps(refusal_screen(args.model, args.refusal)))
        return
    if not args.name:
        parser.error("--name is required for a run")
    row = run_one(args)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    Path(args.table).write_text(table(rows), encoding="utf-8")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
