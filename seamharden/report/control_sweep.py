"""report.md sections of the benign fine-tuning control and the attack sweep (docs/report.md)."""

from __future__ import annotations

from seamharden.attack.results import AttackRun, SuiteResult, attack_label
from seamharden.attack.verdict import Verdict
from seamharden.report.tables import fmt, markdown_table


def _curve(run: AttackRun, metric: str, spec: str) -> str:
    return " → ".join(fmt(getattr(p, metric), spec) for p in run.points)


def benign_control_section(result: SuiteResult, verdict: Verdict, heading: str = "##") -> str:
    """The control's learning curves (held-out benign loss and accuracy at each evaluation) and verdict per run."""
    if not result.benign_control:
        return ""
    judged = {(a.attack, a.model): a for a in verdict.benign_control}
    accuracy = any(p.benign_accuracy is not None for r in result.benign_control for p in r.points)
    header = ["model", "fine-tuning (held-out benign records)", "steps", "benign loss along the run"]
    header += ["benign accuracy along the run"] * accuracy + ["learns", "collapsed"]
    rows = []
    for run in result.benign_control:
        a = judged.get((run.label, run.model))
        row = [run.model, run.label, " ".join(str(p.step) for p in run.points), _curve(run, "benign_loss", ".4g")]
        row += [_curve(run, "benign_accuracy", ".3f")] * accuracy
        row += ["–", "–"] if a is None else ["yes" if a.learns else "NO", "YES" if a.collapsed else "no"]
        rows.append(row)
    brittle = verdict.figures.brittle_controls
    summary = ("" if brittle is None else
               f"Brittle (collapsed where the base was not): **{brittle}** of "
               f"{len(result.controls_of('hardened'))} hardened runs.\n\n")
    return (f"{heading} Benign fine-tuning control\n\n"
            "Both models fine-tuned with the attacks' optimiser settings on held-out benign records, evaluated "
            "on the held-out benign evaluation set; a run is read at its end (docs/report.md).\n\n"
            f"{summary}{markdown_table(header, rows)}\n")


def sweep_section(result: SuiteResult, heading: str = "##") -> str:
    """The sweep's objective, each model's best attack, and every trial."""
    sweep = result.sweep
    if sweep is None:
        return ""
    lines = [f"{heading} Attack sweep\n", f"{sweep.trials} Optuna TPE trials per model (seed {sweep.seed}); "
             f"objective: {sweep.objective}.\n"]
    for model in ("base", "hardened"):
        best = sweep.best_of(model)
        if best is not None:
            lines.append(f"- worst case found on the {model}: trial {best.number}, `{attack_label(best.run.config)}`, "
                         f"score {best.score:.4g}")
    lines += [f"- note: {n}" for n in sweep.notes]
    rows = [[t.run.model, str(t.number), attack_label(t.run.config), fmt(t.score, ".4g"),
             fmt(t.run.final.harmful_loss), fmt(t.run.final.benign_loss)] for t in sweep.history]
    table = markdown_table(("model", "trial", "attack", "score", "harmful loss final", "benign loss final"), rows)
    return "\n".join(lines) + f"\n\n{table}\n"
