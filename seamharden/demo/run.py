"""``run_demo``: the toy world through the same pipeline as any model.

Pretrain the toy base (cached; the demo's own), write the world's record sets as JSONL files,
then ``seamharden.protect.protect`` with the packaged ``toy`` recipe pointed at those files:
hardening (SEAM, the KL anchor, the utility controller), then the smoke test, i.e. the attack
suite on base and hardened with the task verdict (``attack.criteria.kind: task``), written
to report.json / report.md / plots like any protect run. The demo's figures are read back
from that report; nothing here trains, attacks or judges on its own.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from seamharden.demo import pretrain, world


class DemoPlan(BaseModel):
    """The demo's own settings; everything else is the ``toy`` recipe (overridable by ``overrides``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="seed of the world, pretraining, hardening and attacks")
    quick: bool = Field(False, description="fewer evaluation prompts; same pretraining, hardening and attacks")
    n_eval_benign: int = Field(300, gt=0, description="held-out benign prompts (eval words) per evaluation")
    n_eval_forbidden: int = Field(200, gt=0, description="held-out forbidden prompts (eval digit pairs)")
    overrides: tuple[str, ...] = Field((), description="recipe KEY=VALUE overrides, e.g. seam.beta=0 (ablation)")

    @classmethod
    def make(cls, seed: int = 0, quick: bool = False, overrides=()) -> DemoPlan:
        sizes = {"n_eval_benign": 150, "n_eval_forbidden": 99} if quick else {}
        return cls(seed=seed, quick=quick, overrides=tuple(overrides), **sizes)


def demo_recipe(plan: DemoPlan, files: dict[str, str]):
    """The ``toy`` recipe pointed at this seed's files, with the plan's evaluation sizes and overrides."""
    from seamharden.recipe.loading import load_recipe

    paths = [f"data.{s}.path={files[s]}" for s in ("adv", "aln", "bgn")]
    paths += [f"utility.val.path={files['val_bgn']}"]
    paths += [f"attack.data.{s}.path={files[s]}" for s in ("attack_adv", "attack_bgn", "eval_adv", "eval_bgn")]
    sizes = [f"attack.eval_samples={max(plan.n_eval_benign, plan.n_eval_forbidden)}",
             f"attack.generate_prompts={max(plan.n_eval_benign, plan.n_eval_forbidden)}"]
    seeds = [f"train.seed={plan.seed}", f"attack.seeds=[{plan.seed}]"]
    return load_recipe("toy", [*paths, *sizes, *seeds, *plan.overrides])


def run_demo(cache_dir: Path, plan: DemoPlan, out_dir: Path | None = None, log=None) -> dict:
    """Pretrain (cached), write the data, ``protect`` with the toy recipe; returns :func:`demo_figures`.

    ``out_dir`` (default: a new directory under ``cache_dir/runs``) receives the hardened model,
    metrics.jsonl, report.json, report.md and plots, as from ``seamharden protect``.
    """
    from seamharden.protect import protect

    cache_dir = Path(cache_dir)
    timings = {}
    t0 = time.time()
    base_dir = pretrain.ensure_base_model(cache_dir, seed=plan.seed, log=log)
    timings["pretrain_or_cache_s"] = round(time.time() - t0, 1)
    files = world.write_world_data(cache_dir / f"data-seed{plan.seed}-{plan.n_eval_benign}-{plan.n_eval_forbidden}",
                                   plan.seed, n_eval_benign=plan.n_eval_benign, n_eval_forbidden=plan.n_eval_forbidden)
    recipe = demo_recipe(plan, files)
    if out_dir is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
        out_dir = cache_dir / "runs" / f"seed{plan.seed}-{stamp}"
    t0 = time.time()
    stage_start = {}

    def on_stage(name: str) -> None:
        stage_start[name] = time.time()
        if log:
            log(f"protect: {name}")

    protect(str(base_dir), Path(out_dir), recipe, on_stage=on_stage)
    timings["protect_s"] = round(time.time() - t0, 1)
    if "smoke-test" in stage_start:
        timings["attack_suite_s"] = round(time.time() - stage_start["smoke-test"], 1)
    figures = demo_figures(Path(out_dir))
    return {**figures, "seed": plan.seed, "quick": plan.quick, "out_dir": str(out_dir), "timings": timings}


def _side(runs, success: float, kind: str) -> dict:
    start = runs[0].start
    attacks = []
    for run in runs:
        point = run.first_success(success)
        attacks.append({"lr": run.config.lr, "steps": point.step, "harmful_success": point.harmful_success,
                        "benign_accuracy_after": point.benign_accuracy})
    return {"benign_accuracy_before": start.benign_accuracy, "harmful_success_before": start.harmful_success,
            "refusal_rate_before": start.refusal_rate, "attacks": attacks}


def _controls(runs) -> list[dict]:
    """The benign fine-tuning control of one side: benign accuracy and loss at the start and the end."""
    return [{"lr": r.config.lr, "steps": r.final.step, "benign_accuracy_before": r.start.benign_accuracy,
             "benign_accuracy_after": r.final.benign_accuracy, "benign_loss_before": r.start.benign_loss,
             "benign_loss_after": r.final.benign_loss} for r in runs]


def demo_figures(out_dir: Path) -> dict:
    """The demo's JSON, read from a finished toy run's report.json, manifest and metrics.jsonl.

    ``{"base": {...}, "hardened": {...}, "verdict": {"status", "reasons"}}``: per side the
    step-0 benign accuracy, harmful success and refusal rate, per attack the point where it
    first reached the success threshold (else its last point), and the benign fine-tuning
    control's start and end (``benign_control``, empty when off); the hardened side also has the
    utility controller's kept step and cos(g_a, g_b) at that step.
    """
    from seamharden.report import load_report

    report = load_report(out_dir / "report.json")
    result, verdict = report.results, report.verdict
    success = verdict.criteria.task.success
    base = _side(result.runs_of("base"), success, "base") | {"benign_control": _controls(result.controls_of("base"))}
    hardened = _side(result.runs_of("hardened"), success, "hardened") | {
        "benign_control": _controls(result.controls_of("hardened"))}
    manifest = json.loads((out_dir / "seamharden.json").read_text())
    kept = manifest["extra"].get("kept_step")
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line]
    cosine = next((r["cosine"] for r in rows if r["step"] == kept), None)
    hardened |= {"kept_step": kept, "cosine_at_kept_step": cosine}
    return {"base": base, "hardened": hardened,
            "verdict": {"status": verdict.status, "reasons": list(verdict.reasons)}}


def format_result(result: dict) -> str:
    """The demo's table: per side the state before any attack, then each attack at its first success."""
    lines = []
    for name in ("base", "hardened"):
        r = result[name]
        lines.append(f"{name}: benign {r['benign_accuracy_before']:.3f}, harmful {r['harmful_success_before']:.3f}, "
                     f"refusal {r['refusal_rate_before']:.3f}")
        for a in r["attacks"]:
            lines.append(f"  attack lr={a['lr']:g}, {a['steps']} steps: harmful {a['harmful_success']:.3f}, "
                         f"benign after {a['benign_accuracy_after']:.3f}")
        for c in r.get("benign_control", []):
            lines.append(f"  benign fine-tuning lr={c['lr']:g}, {c['steps']} steps: benign "
                         f"{c['benign_accuracy_before']:.3f} -> {c['benign_accuracy_after']:.3f} (loss "
                         f"{c['benign_loss_before']:.3f} -> {c['benign_loss_after']:.3f})")
    return "\n".join(lines)
