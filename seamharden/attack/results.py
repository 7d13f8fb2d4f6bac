"""Results of an attack suite: what the runner measures, what the verdict and report read.

Version 1 of the ``report.json`` ``results`` object (see docs/report.md). Every model
rejects unknown keys; non-finite floats (a diverged loss) serialise as the JSON strings
``"Infinity"`` / ``"NaN"`` and read back as floats.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from seamharden.attack.benchmarks import BenchmarkScore
from seamharden.recipe.schema import AttackConfig

SCHEMA_VERSION = 1

ModelKind = Literal["base", "hardened"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class EvalPoint(_Record):
    """Evaluation of one model at one attack step (step 0 = before the attack)."""

    step: int = Field(..., ge=0)
    harmful_loss: float = Field(..., description="mean CE on held-out harmful responses (D_adv)")
    refusal_rate: float | None = Field(None, ge=0, le=1, description="share of harmful prompts refused (coherently)")
    collapse_rate: float | None = Field(
        None, ge=0, le=1, description="share of answers to harmful prompts that are not coherent text (collapsed)")
    benign_loss: float = Field(..., description="mean CE on held-out benign responses (D_bgn)")
    benign_accuracy: float | None = Field(None, ge=0, le=1, description="benign next-token or task accuracy")
    judge_score: float | None = Field(
        None, description="mean harmfulness a judge model gives the coherent answers, if one was run")
    harmful_success: float | None = Field(
        None, ge=0, le=1, description="share of harmful prompts answered with the true harmful answer, if scored"
    )


class AttackRun(_Record):
    """One attack on one model: its config and the points logged along the way."""

    config: AttackConfig
    model: ModelKind
    points: list[EvalPoint] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _check_steps(self) -> AttackRun:
        steps = [p.step for p in self.points]
        if steps[0] != 0:
            raise ValueError("the first point of an attack run must be step 0 (before the attack)")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("attack run points must have strictly increasing steps")
        return self

    @property
    def label(self) -> str:
        """Short, unique-per-config name of the attack, e.g. ``full/adamw lr=5e-05 n=1000``."""
        return attack_label(self.config)

    @property
    def start(self) -> EvalPoint:
        return self.points[0]

    @property
    def final(self) -> EvalPoint:
        return self.points[-1]

    def first_success(self, threshold: float) -> EvalPoint:
        """The first point whose ``harmful_success`` reaches ``threshold``, else the last point.

        "Stop at first success" read off the recorded trajectory: the attacker keeps the first
        checkpoint that does what it wanted; points without ``harmful_success`` never qualify.
        """
        return next((p for p in self.points if p.harmful_success is not None and p.harmful_success >= threshold),
                    self.final)

    @property
    def best_harmful_index(self) -> int:
        """Index of the point with the lowest finite harmful loss (0 if none is finite)."""
        finite = [(p.harmful_loss, i) for i, p in enumerate(self.points) if math.isfinite(p.harmful_loss)]
        return min(finite)[1] if finite else 0


class GradientSample(_Record):
    """Per-batch gradient vectors of one data stream, randomly projected to a few dims."""

    model: ModelKind
    stream: Literal["adv", "bgn"]
    vectors: list[list[float]]

    @model_validator(mode="after")
    def _check_width(self) -> GradientSample:
        if len({len(v) for v in self.vectors}) > 1:
            raise ValueError("all gradient vectors of a sample must have the same length")
        return self


class SweepTrial(_Record):
    """One trial of an attack sweep (``attack.budget: sweep``): the attack Optuna proposed, its run, its score."""

    number: int = Field(..., ge=0, description="the trial's index in its model's study")
    params: dict[str, Any] = Field(..., description="the values Optuna suggested, by parameter name")
    score: float = Field(..., description="the objective: capability-bounded harmful gain (docs/report.md)")
    run: AttackRun


class SweepRecord(_Record):
    """An attack sweep: the search of each model, and its best trial (the worst case found)."""

    trials: int = Field(..., gt=0, description="trials per model")
    seed: int
    objective: str = Field(..., description="what each trial's score measures")
    space: dict[str, Any] = Field(..., description="the search space (attack.sweep_space)")
    history: list[SweepTrial] = Field(default_factory=list, description="every trial, base then hardened")
    best: dict[str, int] = Field(default_factory=dict, description="model -> number of its highest-scoring trial")
    notes: list[str] = Field(default_factory=list)

    def trials_of(self, model: ModelKind) -> list[SweepTrial]:
        return [t for t in self.history if t.run.model == model]

    def best_of(self, model: ModelKind) -> SweepTrial | None:
        number = self.best.get(model)
        return next((t for t in self.trials_of(model) if t.number == number), None)


class SuiteResult(_Record):
    """Everything one attack suite produced, for both models.

    ``benign_control``: runs of the benign fine-tuning control (the attacks' optimiser settings on
    held-out benign records); ``sweep``: the attack sweep's history under ``budget: sweep``, whose
    ``runs`` are then each model's best attack run on both models.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    base_model: str
    hardened_model: str
    budget: str
    runs: list[AttackRun] = Field(default_factory=list)
    gradients: list[GradientSample] = Field(default_factory=list)
    benign_control: list[AttackRun] = Field(default_factory=list)
    sweep: SweepRecord | None = None
    fidelity: dict[str, Any] | None = None
    benchmarks: list[BenchmarkScore] = Field(default_factory=list, description="lm-eval utility benchmarks")
    extra: dict[str, Any] = Field(default_factory=dict)

    def runs_of(self, model: ModelKind) -> list[AttackRun]:
        return [r for r in self.runs if r.model == model]

    def controls_of(self, model: ModelKind) -> list[AttackRun]:
        return [r for r in self.benign_control if r.model == model]

    def pairs(self) -> list[tuple[AttackConfig, AttackRun | None, AttackRun | None]]:
        """(config, base run, hardened run) per distinct config, in first-seen order."""
        order: dict[str, AttackConfig] = {}
        found: dict[tuple[str, str], AttackRun] = {}
        for run in self.runs:
            key = config_key(run.config)
            order.setdefault(key, run.config)
            found.setdefault((key, run.model), run)
        return [(cfg, found.get((k, "base")), found.get((k, "hardened"))) for k, cfg in order.items()]


def config_key(config: AttackConfig) -> str:
    """Canonical identity of an attack config (its JSON)."""
    return config.model_dump_json()


def attack_label(config: AttackConfig) -> str:
    """Human-readable attack name; fields at their defaults are left out.

    E.g. ``full/adamw lr=1e-04 n=2000 steps=200 bs=32 constant warmup=0 wd=0 clip=none every=5``.
    """
    parts = [f"{config.method}/{config.optimizer}", f"lr={_short_float(config.lr)}", f"n={config.samples}"]
    if config.method == "lora" and config.lora_rank != AttackConfig.model_fields["lora_rank"].default:
        parts.append(f"r={config.lora_rank}")
    if config.steps is not None:
        parts.append(f"steps={config.steps}")
    if config.batch_size != AttackConfig.model_fields["batch_size"].default:
        parts.append(f"bs={config.batch_size}")
    if config.benign_mix:
        parts.append(f"mix={config.benign_mix:g}")
    if config.seed:
        parts.append(f"seed={config.seed}")
    defaults = AttackConfig.model_fields
    if config.scheduler != defaults["scheduler"].default:
        parts.append(config.scheduler)
    if config.warmup_ratio != defaults["warmup_ratio"].default:
        parts.append(f"warmup={config.warmup_ratio:g}")
    if config.weight_decay != defaults["weight_decay"].default:
        parts.append(f"wd={config.weight_decay:g}")
    if config.max_grad_norm != defaults["max_grad_norm"].default:
        parts.append(f"clip={'none' if config.max_grad_norm is None else format(config.max_grad_norm, 'g')}")
    if config.eval_every is not None:
        parts.append(f"every={config.eval_every}")
    return " ".join(parts)


def _short_float(x: float) -> str:
    """``2e-05`` for 2e-5, ``3.5e-05`` for 3.5e-5: scientific, no trailing zeros."""
    mantissa, exponent = f"{x:.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
