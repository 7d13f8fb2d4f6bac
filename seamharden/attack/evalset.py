"""The held-out evaluation data of one tokenizer, encoded once and reused at every evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from seamharden.data import builtin_mc, encode_choices, encode_example, encode_prompt, pad_id
from seamharden.recipe.schema import AttackSection

Judge = Callable[[list[str], list[str]], float]
"""(prompts, answers) -> mean harmfulness in [0, 1]."""


@dataclass(frozen=True)
class EvalSettings:
    """How much each evaluation measures; small by default so that evaluating often stays cheap.

    ``samples``: records per loss; ``generate_prompts``: prompts per generative scorer (refusal,
    judge, exact match, harmful success), greedy for ``max_new_tokens`` tokens in batches of
    ``generate_batch_size``; ``mc_items``: multiple-choice items; ``benign_scorer`` fills
    ``benign_accuracy``; ``harmful_success`` turns the ground-truth harm judge on;
    ``refusal_markers`` are phrases counted as refusals besides the built-in ones;
    ``max_nonword_rate`` / ``max_repeat_rate``: above either an answer is collapsed
    (``seamharden.attack.coherence``); ``benchmarks``: lm-eval tasks scored before and after each
    attack (``seamharden.attack.benchmarks``), from ``benchmark_include`` too, ``benchmark_limit``
    examples each.
    """

    samples: int = 32
    generate_prompts: int = 8
    max_new_tokens: int = 16
    mc_items: int = 16
    batch_size: int = 8
    generate_batch_size: int = 8
    judge_model: str | None = None
    benign_scorer: Literal["mc", "exact_match"] = "mc"
    harmful_success: bool = False
    refusal_markers: tuple[str, ...] = ()
    max_nonword_rate: float = 0.3
    max_repeat_rate: float = 0.5
    benchmarks: tuple[str, ...] = ()
    benchmark_include: str | None = None
    benchmark_limit: int | None = None

    @classmethod
    def from_section(cls, section: AttackSection, **overrides) -> EvalSettings:
        """Settings from the recipe's ``attack`` section; ``overrides`` replace any of them."""
        prompts = section.generate_prompts or min(8, section.eval_samples)
        values = {"samples": section.eval_samples, "generate_prompts": prompts,
                  "max_new_tokens": section.max_new_tokens, "mc_items": min(16, section.eval_samples),
                  "judge_model": section.judge_model, "benign_scorer": section.benign_scorer,
                  "harmful_success": section.harmful_success, "batch_size": section.eval_batch_size,
                  "refusal_markers": tuple(section.refusal_markers),
                  "generate_batch_size": section.eval_batch_size,
                  "max_nonword_rate": section.coherence.max_nonword_rate,
                  "max_repeat_rate": section.coherence.max_repeat_rate,
                  "benchmarks": tuple(section.benchmarks), "benchmark_include": section.benchmark_include,
                  "benchmark_limit": section.benchmark_limit}
        return cls(**(values | overrides))


@dataclass
class Prompts:
    """Prompts for greedy generation: ids (prompt + generation prefix), texts, and the records' responses."""

    ids: list[list[int]]
    texts: list[str]
    targets: list[str]


@dataclass
class EvalSet:
    """Held-out data of one tokenizer: loss examples, generation prompts per stream, MC items.

    ``answers`` caches greedy answers per stream during one ``evaluate`` call (None outside it),
    so scorers reading the same stream's answers generate them once.
    """

    adv: list[dict[str, list[int]]]
    bgn: list[dict[str, list[int]]]
    adv_prompts: Prompts
    bgn_prompts: Prompts
    mc: list[tuple[list[dict[str, list[int]]], int]]
    pad_token_id: int
    settings: EvalSettings
    judge: Judge | None = field(default=None, repr=False)
    answers: dict[str, list[str]] | None = field(default=None, repr=False)


def _prompts(tokenizer, records: Sequence[dict], template: str, max_length: int) -> Prompts:
    texts = [r["prompt"] for r in records]
    ids = [encode_prompt(tokenizer, t, template)[-(max_length - 1):] for t in texts]
    return Prompts(ids, texts, [str(r["response"]) for r in records])


def prepare_eval(tokenizer, adv_records: Sequence[dict], bgn_records: Sequence[dict], template: str,
                 max_length: int, settings: EvalSettings, judge: Judge | None = None) -> EvalSet:
    """Encode the first ``settings.samples`` records of each stream for the losses, the first
    ``settings.generate_prompts`` as generation prompts, and the MC items."""
    if not adv_records or not bgn_records:
        raise ValueError("evaluation needs at least one held-out adv and one bgn record")
    adv = [encode_example(tokenizer, r["prompt"], r["response"], template, max_length)
           for r in adv_records[: settings.samples]]
    bgn = [encode_example(tokenizer, r["prompt"], r["response"], template, max_length)
           for r in bgn_records[: settings.samples]]
    n = settings.generate_prompts
    mc = [(encode_choices(tokenizer, item["question"], item["choices"], template, max_length), int(item["answer"]))
          for item in builtin_mc()[: settings.mc_items]] if settings.benign_scorer == "mc" else []
    return EvalSet(adv, bgn, _prompts(tokenizer, adv_records[:n], template, max_length),
                   _prompts(tokenizer, bgn_records[:n], template, max_length), mc, pad_id(tokenizer), settings, judge)
