"""The Hub model card (``README.md``) of a hardened model: model-index metadata and a body."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from seamharden.attack.results import SuiteResult
from seamharden.attack.verdict import Verdict
from seamharden.report.evaluation import (
    DEFAULT_DATASET_NAME,
    DEFAULT_DATASET_TYPE,
    evaluation_figures,
    evaluation_section,
)
from seamharden.report.markdown import plots_section, verdict_section
from seamharden.report.tables import attack_table

CARD_TAGS = ["seamharden", "seam", "self-destructive"]
TASK_NAME = "Harmful fine-tuning attack suite"

METRICS = (
    ("hardened_bounded_gain", "seamharden/bounded_harm_gain", "Capability-bounded harmful gain (hardened)"),
    ("base_worst_gain", "seamharden/base_harm_gain", "Harmful gain on the base model"),
    ("bounded_ratio", "seamharden/bounded_harm_ratio", "Bounded harmful gain, hardened / base"),
    ("utility_drop", "seamharden/utility_drop", "Utility drop (benign loss, hardened vs base)"),
    ("accuracy_drop", "seamharden/accuracy_drop", "Benign accuracy drop before attack (base - hardened)"),
    ("base_worst_accuracy_after", "seamharden/base_accuracy_after_attack",
     "Base's worst benign accuracy at an attack's first success"),
    ("hardened_kept_skill_attacks", "seamharden/hardened_successful_attacks_keeping_skill",
     "Successful attacks on the hardened model that kept benign accuracy above the collapse limit"),
)


def card_eval_results(verdict: Verdict, *, dataset_name: str, dataset_type: str,
                      result: SuiteResult | None = None) -> list[EvalResult]:
    """One ``EvalResult`` per verdict figure that could be computed, then (with ``result``) one per
    benchmark, judge, refusal and collapse figure (``seamharden.report.evaluation``)."""
    out = []
    for field, metric_type, metric_name in METRICS:
        value = getattr(verdict.figures, field)
        if value is None:
            continue
        out.append(EvalResult(
            task_type="text-generation",
            task_name=TASK_NAME,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(float(value), 6),
            verified=False,
        ))
    figures = evaluation_figures(result, dataset_type=dataset_type, dataset_name=dataset_name) if result else []
    out += [EvalResult(task_type="text-generation", task_name=f.task_name, dataset_type=f.dataset_type,
                       dataset_name=f.dataset_name, metric_type=f.metric_type, metric_name=f.metric_name,
                       metric_value=round(float(f.value), 6), verified=False) for f in figures]
    return out


def _body(result: SuiteResult, verdict: Verdict, *, title: str, base_model: str, recipe_name: str,
          plots: Sequence[str], dataset_type: str, dataset_name: str) -> str:
    return "\n".join(s for s in (
        f"# {title}\n",
        (f"This model is `{base_model}` hardened with SEAM (self-destructive model, arXiv 2505.12186) "
        f"by seamharden using the recipe `{recipe_name}`. SEAM trains the model so that "
        "fine-tuning it on harmful data pushes against its benign capabilities: an attacker who fine-tunes it "
        "towards harmful answers should lose the model's usefulness before gaining much harmfulness.\n"),
        ("The claim was tested, not assumed: the same harmful fine-tuning attacks "
        f"(budget `{result.budget}`) were run on the base and on the hardened model side by side. "
        "The verdict below compares the harm an attacker can reach while the model is still usable.\n"),
        verdict_section(verdict),
        "## Attacks\n",
        attack_table(result, verdict) + "\n",
        evaluation_section(result, dataset_type=dataset_type, dataset_name=dataset_name),
        plots_section(plots),
        ("## Limitations\n\n"
        "- The verdict covers only the attacks listed above; other learning rates, optimisers, data or longer "
        "attacks may succeed.\n"
        "- Losses are measured on small held-out sets; benchmarks, a judge model, refusal and collapse rates, "
        "where present, are reported but not part of the verdict.\n"
        "- Hardening may reduce some capabilities not covered by the benign evaluation set.\n"),
    ) if s)


def write_model_card(result: SuiteResult, verdict: Verdict, out_dir: str | Path, *, base_model: str,
                     recipe_name: str, title: str | None = None, model_name: str | None = None,
                     license: str | None = None, dataset_name: str | None = None,
                     dataset_type: str | None = None, plots: Sequence[str] = ()) -> Path:
    """Write ``README.md`` with model-index metadata into ``out_dir``; never pushes."""
    model_name = model_name or result.hardened_model
    dataset_name, dataset_type = dataset_name or DEFAULT_DATASET_NAME, dataset_type or DEFAULT_DATASET_TYPE
    title = title or f"{model_name}: SEAM-hardened {base_model}"
    data = ModelCardData(
        base_model=base_model,
        license=license,
        tags=list(CARD_TAGS),
        pipeline_tag="text-generation",
        model_name=model_name,
        eval_results=card_eval_results(verdict, dataset_name=dataset_name, dataset_type=dataset_type,
                                       result=result) or None,
    )
    body = _body(result, verdict, title=title, base_model=base_model, recipe_name=recipe_name, plots=plots,
                 dataset_type=dataset_type, dataset_name=dataset_name)
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    path = Path(out_dir) / "README.md"
    card.save(path)
    return path


def write_unverified_card(out_dir: str | Path, *, base_model: str, recipe_name: str) -> Path:
    """``README.md`` for a model hardened without the smoke test: metadata, and no robustness claim."""
    data = ModelCardData(base_model=base_model, tags=list(CARD_TAGS), pipeline_tag="text-generation")
    body = (
        f"# SEAM-hardened {base_model}\n\n"
        f"Hardened with seamharden (recipe `{recipe_name}`). **No attack smoke test was run**, so this\n"
        "card makes no claim about robustness to harmful fine-tuning. Run `seamharden verify` on it.\n"
    )
    path = Path(out_dir) / "README.md"
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(path)
    return path
