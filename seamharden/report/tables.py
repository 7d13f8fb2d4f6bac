"""Markdown tables shared by ``report.md`` and the model card."""

from __future__ import annotations

import math

from seamharden.attack.results import AttackRun, SuiteResult
from seamharden.attack.verdict import AttackAssessment, TaskAssessment, Verdict

ATTACK_COLUMNS = (
    "attack", "model", "harmful start", "harmful final", "harmful best kept (step)", "harm gain",
    "benign start", "benign final", "benign acc final", "refusal start → final", "collapsed at step",
)
JUDGE_COLUMN = "judge start → final"
COLLAPSE_COLUMN = "collapsed answers start → final"
HARM_COLUMN = "harmful success start → final"
TASK_COLUMNS = ("first success (step)", "harmful success there", "benign acc there")


def fmt(value: float | None, spec: str = ".3g") -> str:
    """A number for a table cell; ``–`` for missing, ``inf``/``nan`` spelled out."""
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def benign_accuracy_name(result: SuiteResult) -> str:
    """What ``benign_accuracy`` measured in ``result``: ``exact match`` or ``MC`` (from the recorded settings)."""
    scorer = result.extra.get("eval_settings", {}).get("benign_scorer", "mc")
    return "exact match" if scorer == "exact_match" else "MC"


def _task_cells(a: TaskAssessment | None) -> list[str]:
    if a is None:
        return ["–"] * len(TASK_COLUMNS)
    step = f"{a.success_step}" if a.success_step is not None else f"none by {a.read_step}"
    return [step, fmt(a.harmful_success, ".1%"), fmt(a.benign_accuracy, ".1%")]


def _row(run: AttackRun, a: AttackAssessment | None, judge: bool, harm: bool, collapse: bool = False) -> list[str]:
    start, final = run.start, run.final
    if a is not None and a.bounded_step is not None:
        kept = next(p for p in run.points if p.step == a.bounded_step)
        best = f"{fmt(kept.harmful_loss)} ({a.bounded_step})"
    else:
        best = "–"
    row = [
        run.label,
        run.model,
        fmt(start.harmful_loss),
        fmt(final.harmful_loss),
        best,
        fmt(a.bounded_gain, ".1%") if a else "–",
        fmt(start.benign_loss),
        fmt(final.benign_loss),
        fmt(final.benign_accuracy, ".1%"),
        f"{fmt(start.refusal_rate, '.0%')} → {fmt(final.refusal_rate, '.0%')}",
        fmt(a.first_collapse_step) if a else "–",
    ]
    if collapse:
        row.append(f"{fmt(start.collapse_rate, '.0%')} → {fmt(final.collapse_rate, '.0%')}")
    if judge:
        row.append(f"{fmt(start.judge_score)} → {fmt(final.judge_score)}")
    if harm:
        row.append(f"{fmt(start.harmful_success, '.1%')} → {fmt(final.harmful_success, '.1%')}")
    return row


def markdown_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def attack_table(result: SuiteResult, verdict: Verdict) -> str:
    """One row per attack run, base and hardened of the same attack next to each other.

    Columns for collapsed (incoherent) answers, the judge and harmful success appear when measured;
    under task criteria, each run's first success (step, harmful success and benign accuracy there) too.
    """
    by_run = {(a.attack, a.model): a for a in verdict.attacks}
    judge = any(p.judge_score is not None for r in result.runs for p in r.points)
    collapse = any(p.collapse_rate is not None for r in result.runs for p in r.points)
    harm = any(p.harmful_success is not None for r in result.runs for p in r.points)
    task = verdict.criteria.kind == "task" and bool(verdict.attacks)
    header = [c.replace("benign acc", f"benign acc ({benign_accuracy_name(result)})") for c in ATTACK_COLUMNS]
    header += [COLLAPSE_COLUMN] * collapse + [JUDGE_COLUMN] * judge + [HARM_COLUMN] * harm + list(TASK_COLUMNS) * task
    rows = []
    for _, base, hard in result.pairs():
        for run in (base, hard):
            if run is not None:
                a = by_run.get((run.label, run.model))
                row = _row(run, a if isinstance(a, AttackAssessment) else None, judge, harm, collapse)
                rows.append(row + (_task_cells(a if isinstance(a, TaskAssessment) else None) if task else []))
    return markdown_table(header, rows)


def figures_table(verdict: Verdict) -> str:
    """The verdict's figures next to the limits they were checked against."""
    if verdict.criteria.kind == "task":
        return task_figures_table(verdict)
    f, c = verdict.figures, verdict.criteria
    rows = [
        ["utility drop (hardened vs base benign loss)", fmt(f.utility_drop, "+.1%"), f"≤ +{c.max_utility_drop:.0%}"],
        ["base worst harm gain", fmt(f.base_worst_gain, ".1%"), f"≥ {c.min_base_harm_gain:.0%}"],
        ["hardened capability-bounded harm gain", fmt(f.hardened_bounded_gain, ".1%"), ""],
        ["bounded ratio (hardened / base)", fmt(f.bounded_ratio, ".2f"), f"≤ {c.max_bounded_harm_ratio:.2f}"],
        ["hardened harm gain incl. collapsed points", fmt(f.hardened_unbounded_gain, ".1%"), ""],
        ["hardened attack runs that collapsed", fmt(f.collapsed_attacks), f"benign loss > {c.utility_floor:g} × base"],
    ]
    return markdown_table(("figure", "value", "limit"), rows)


def task_figures_table(verdict: Verdict) -> str:
    """Figures of the task verdict (attacks read at their first success) next to their limits."""
    f, t = verdict.figures, verdict.criteria.task
    rows = [
        ["benign accuracy before attack, base", fmt(f.base_benign_accuracy, ".1%"), ""],
        ["benign accuracy before attack, hardened", fmt(f.hardened_benign_accuracy, ".1%"),
         f"≥ base − {t.utility_tolerance:g}"],
        ["base attacks that did not reach the harmful success", fmt(f.base_untaught_attacks),
         f"0 (success ≥ {t.success:g})"],
        ["base attacks that wore down the base's skill", fmt(f.base_forgetting_attacks),
         f"0 (keep ≥ {t.keep_fraction:g} × base)"],
        ["base's worst benign accuracy after attack", fmt(f.base_worst_accuracy_after, ".1%"), ""],
        ["collapse limit", fmt(f.collapse_limit, ".1%"), f"{t.collapse_fraction:g} × base's worst"],
        ["hardened attacks reaching the harmful success", fmt(f.hardened_successful_attacks), ""],
        ["… of which kept benign accuracy above the limit", fmt(f.hardened_kept_skill_attacks), "0"],
        ["hardened attacks collapsed (at or below the limit)", fmt(f.collapsed_attacks), "≥ 1"],
    ]
    return markdown_table(("figure", "value", "limit"), rows)
