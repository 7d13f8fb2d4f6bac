"""``report.md``: the verdict, its reasons and figures, the per-attack table, the plots."""

from __future__ import annotations

from collections.abc import Sequence

from seamharden.attack.results import SuiteResult
from seamharden.attack.verdict import Verdict
from seamharden.report.control_sweep import benign_control_section, sweep_section
from seamharden.report.evaluation import DEFAULT_DATASET_NAME, DEFAULT_DATASET_TYPE, evaluation_section
from seamharden.report.tables import attack_table, figures_table

STATUS_TEXT = {
    "pass": "the hardened model resists the attacks while keeping its utility.",
    "fail": "the hardening does not hold up.",
    "inconclusive": "this suite cannot tell whether the hardening works.",
}

PLOT_CAPTIONS = {
    "harmful_loss.png": "Harmful loss vs attack step (colour: learning rate, style: attack variant).",
    "benign_loss.png": "Benign loss (utility) vs attack step; dashed: the collapse floor.",
    "utility_vs_harm.png": "Utility vs harmfulness along each attack, base and hardened.",
    "gradient_pca.png": "PCA of per-batch gradients on D_adv and D_bgn, base and hardened.",
    "harmful_success.png": "Harmful success (exact match with the true harmful answer) vs attack step; "
                           "dashed: the success threshold of task criteria.",
    "benign_accuracy.png": "Benign accuracy vs attack step; dashed: the collapse limit of task criteria.",
}
TABLE_TEXT = {
    "loss": "Harm gain: the largest relative drop of harmful loss below the base model's step-0 value "
            "at a checkpoint whose utility has not collapsed (docs/report.md).",
    "task": "Task criteria read every attack at its first success: the first evaluation whose harmful "
            "success reaches the threshold, else its last evaluation (docs/report.md).",
}


def verdict_section(verdict: Verdict, heading: str = "##") -> str:
    reasons = "\n".join(f"- {r}" for r in verdict.reasons)
    return (f"{heading} Verdict: {verdict.status.upper()}\n\n**{STATUS_TEXT[verdict.status].capitalize()}**\n\n"
            f"{reasons}\n\n{figures_table(verdict)}\n")


def plots_section(plots: Sequence[str], heading: str = "##") -> str:
    if not plots:
        return ""
    parts = [f"{heading} Plots\n"]
    for rel in plots:
        name = rel.rsplit("/", 1)[-1]
        parts.append(f"{PLOT_CAPTIONS.get(name, name)}\n\n![{name}]({rel})\n")
    return "\n".join(parts)


def hardening_section(hardening: dict | None, heading: str = "##") -> str:
    """What the protect run did (``results.extra.hardening``): steps, anchor, the utility controller's kept step."""
    if not hardening:
        return ""
    lines = [f"- steps: {hardening['steps']}", f"- benign KL anchor weight at the start: {hardening['anchor']:g}"]
    if hardening.get("beta_delay"):
        lines.append(f"- L_sd off for the first {hardening['beta_delay']} steps (seam.beta_delay)")
    if hardening.get("delay_restart"):
        lines.append(f"- a fresh optimizer, warm-up and anchor reference from the weights of step "
                     f"{hardening['delay_restart']} (seam.delay_restart)")
    est = hardening.get("estimator")
    if est:
        if est["checked_steps"]:
            check = (f"self-check at h and h/2 on {est['checked_steps']} steps, worst consistency "
                     f"{est['worst_consistency']:.3g} (limit {est['threshold']:g})")
        else:
            check = "exact Hessian-vector products" if est["difference"] == "hvp" else "no self-check"
        folded = "; grad L_ul taken in the perturbed adversarial pass (seam.unlearn_pass=perturbed)" if (
            est.get("unlearn_pass") == "perturbed") else ""
        lines.append(f"- L_sd estimator: {est['difference']}; {check}{folded}")
        if est["failed_steps"]:
            lines.append(f"- **WARNING: the L_sd estimate failed its self-check on {est['failed_steps']} steps "
                         f"(first: step {est['first_failed_step']})**; those steps may have followed a wrong "
                         "self-destruction gradient (docs/method.md, self-check)")
    if hardening.get("kept_step") is not None:
        lines.append(f"- utility controller: kept the weights of step {hardening['kept_step']} (the last within "
                     f"budget: {hardening['utility_metric']} within {hardening['utility_tolerance']:g} of its start "
                     f"{hardening['utility_start']:.4g} on the defender's validation records)")
        if hardening.get("beta_delay") and hardening["kept_step"] <= hardening["beta_delay"]:
            lines.append(f"- **WARNING: the kept weights (step {hardening['kept_step']}) predate L_sd**, which came on "
                         f"after step {hardening['beta_delay']} (seam.beta_delay): no copy trained with L_sd stayed "
                         "within the utility budget, so this model was not trained to self-destruct")
    return f"{heading} Hardening\n\n" + "\n".join(lines) + "\n"


def render_report_md(result: SuiteResult, verdict: Verdict, *, title: str, base_model: str,
                     recipe_name: str, plots: Sequence[str], dataset_type: str = DEFAULT_DATASET_TYPE,
                     dataset_name: str = DEFAULT_DATASET_NAME) -> str:
    """The whole ``report.md``; ``plots`` are paths relative to the report's directory; ``dataset_*`` name
    the harmful prompts in the judge / refusal / collapse figures."""
    attacked = f" (attacked as `{result.base_model}`)" if result.base_model != base_model else ""
    head = (
        f"# {title}\n\n"
        f"- base model: `{base_model}`{attacked}\n"
        f"- hardened model: `{result.hardened_model}`\n"
        f"- recipe: `{recipe_name}`, attack budget: `{result.budget}`\n"
        f"- attack runs: {len(result.runs_of('base'))} on the base, "
        f"{len(result.runs_of('hardened'))} on the hardened model\n"
    )
    table = (
        "## Attacks\n\n"
        f"{TABLE_TEXT[verdict.criteria.kind]}\n\n"
        f"{attack_table(result, verdict)}\n"
    )
    hardening = hardening_section(result.extra.get("hardening"))
    fidelity = ""
    if result.fidelity:
        rows = "\n".join(f"- {k}: {v}" for k, v in result.fidelity.items())
        fidelity = f"## Gradient-estimate fidelity\n\n{rows}\n"
    evaluation = evaluation_section(result, dataset_type=dataset_type, dataset_name=dataset_name)
    sections = (head, hardening, verdict_section(verdict), table, evaluation, sweep_section(result),
                benign_control_section(result, verdict), fidelity, plots_section(plots))
    return "\n".join(s for s in sections if s)
