"""Utility benchmarks, the generation figures (judge, refusal, collapse) and the attack sweep's worst case,
for report.md and the model card.

``evaluation_figures`` is the one summary both read: per model, the value before any attack
and the worst case over the attacks' final points, each named with what it is over. The
model card's model-index carries exactly these figures; ``benchmark_table`` and
``evaluation_table`` show them (and every attack's benchmark scores) in markdown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from seamharden.attack.results import ModelKind, SuiteResult
from seamharden.report.tables import fmt, markdown_table

DEFAULT_DATASET_NAME = "seamharden built-in harmful set"
DEFAULT_DATASET_TYPE = "seamharden/builtin-adv"
BENCHMARK_TASK = "Utility benchmark (lm-evaluation-harness)"
GENERATION_TASK = "Harmful prompts: judge, refusal and collapse"
SWEEP_TASK = "Attack sweep (attack.budget: sweep)"


@dataclass(frozen=True)
class Figure:
    """One summary figure: a model-index entry and a table row."""

    model: ModelKind
    task_name: str
    dataset_type: str
    dataset_name: str
    metric_type: str
    metric_name: str
    value: float


def _benchmark_figures(result: SuiteResult) -> list[Figure]:
    out = []
    keys = list(dict.fromkeys((b.task, b.metric) for b in result.benchmarks))
    for model in ("hardened", "base"):
        for task, metric in keys:
            rows = [b for b in result.benchmarks if b.model == model and (b.task, b.metric) == (task, metric)]
            before = [b.value for b in rows if b.attack is None]
            after = [b.value for b in rows if b.attack is not None]
            prefix = "" if model == "hardened" else "base_"
            if before:
                out.append(Figure(model, BENCHMARK_TASK, task, task, f"{prefix}{metric}" if prefix else metric,
                                  f"{task} {metric}, {model} model, before attack", before[0]))
            if after:
                out.append(Figure(model, BENCHMARK_TASK, task, task, f"seamharden/{prefix}{metric}_after_attack",
                                  f"{task} {metric}, {model} model, highest after an attack ({len(after)} attacks)",
                                  max(after)))
    return out


GENERATION_METRICS: tuple[tuple[str, str, Callable[[Sequence[float]], float], str], ...] = (
    ("judge_score", "judge harmfulness of coherent answers", max, "highest"),
    ("refusal_rate", "coherent refusal rate", min, "lowest"),
    ("collapse_rate", "collapsed (incoherent) answer rate", max, "highest"),
)


def _generation_figures(result: SuiteResult, dataset_type: str, dataset_name: str) -> list[Figure]:
    out = []
    for model in ("hardened", "base"):
        runs = result.runs_of(model)
        if not runs:
            continue
        for field, name, worst, word in GENERATION_METRICS:
            start = getattr(runs[0].start, field)
            finals = [v for r in runs if (v := getattr(r.final, field)) is not None]
            prefix = "" if model == "hardened" else "base_"
            if start is not None:
                out.append(Figure(model, GENERATION_TASK, dataset_type, dataset_name, f"seamharden/{prefix}{field}",
                                  f"{name}, {model} model, before attack", start))
            if finals:
                out.append(Figure(model, GENERATION_TASK, dataset_type, dataset_name,
                                  f"seamharden/{prefix}{field}_after_attack",
                                  f"{name}, {model} model, {word} after an attack ({len(finals)} attacks)",
                                  worst(finals)))
    return out


def _sweep_figures(result: SuiteResult, dataset_type: str, dataset_name: str) -> list[Figure]:
    """Per model, the score of the sweep's best trial: the worst case its search found (``SweepRecord.objective``)."""
    if result.sweep is None:
        return []
    out = []
    for model in ("hardened", "base"):
        best = result.sweep.best_of(model)
        if best is not None:
            prefix = "" if model == "hardened" else "base_"
            out.append(Figure(model, SWEEP_TASK, dataset_type, dataset_name, f"seamharden/{prefix}sweep_worst_score",
                              f"attack sweep: {result.sweep.objective}, {model} model, worst of "
                              f"{len(result.sweep.trials_of(model))} trials", best.score))
    return out


def evaluation_figures(result: SuiteResult, *, dataset_type: str, dataset_name: str) -> list[Figure]:
    """Benchmark figures, then judge / refusal / collapse figures (those measured), then the attack sweep's
    worst case per model, hardened model first.

    None at all when nothing was measured on the hardened model: the base's figures are there to compare.
    """
    figures = (_benchmark_figures(result) + _generation_figures(result, dataset_type, dataset_name)
               + _sweep_figures(result, dataset_type, dataset_name))
    return figures if any(f.model == "hardened" for f in figures) else []


def evaluation_table(figures: Sequence[Figure]) -> str:
    """The summary figures as a markdown table; empty without figures."""
    if not figures:
        return ""
    return markdown_table(("figure", "value"), [[f.metric_name, fmt(f.value, ".4g")] for f in figures])


def benchmark_table(result: SuiteResult) -> str:
    """Every benchmark score: one row per model and point (before attack, after each attack), a column per metric."""
    if not result.benchmarks:
        return ""
    keys = list(dict.fromkeys((b.task, b.metric) for b in result.benchmarks))
    points: dict[tuple[ModelKind, str | None, int], dict[tuple[str, str], float]] = {}
    for b in result.benchmarks:
        points.setdefault((b.model, b.attack, b.step), {})[(b.task, b.metric)] = b.value
    rows = [[model, "before attack" if attack is None else attack, str(step),
             *(fmt(values.get(k), ".4g") for k in keys)] for (model, attack, step), values in points.items()]
    return markdown_table(("model", "weights", "step", *(f"{t} {m}" for t, m in keys)), rows)


def evaluation_section(result: SuiteResult, *, dataset_type: str, dataset_name: str, heading: str = "##") -> str:
    """``Benchmarks, judge, refusal and collapse``: the summary figures and the benchmark table; empty if none."""
    figures = evaluation_figures(result, dataset_type=dataset_type, dataset_name=dataset_name)
    if not figures:
        return ""
    parts = [f"{heading} Benchmarks, judge, refusal and collapse\n",
             "Before attack: the pristine model; after an attack: each attack's final weights, the worst case "
             "over attacks named. The judge and the refusal rate count coherent answers only; an answer that is "
             "empty, mostly non-words or self-repeating is counted as collapsed, never as refusing or safe "
             "(docs/report.md).\n", evaluation_table(figures) + "\n"]
    if result.benchmarks:
        parts += ["Benchmark scores at every point:\n", benchmark_table(result) + "\n"]
    return "\n".join(parts)

