"""The attack suite: the same harmful fine-tuning attacks on the base and the hardened model.

Data (``suite_data``): the held-out split of D_adv / D_bgn is recomputed exactly as
``build_seam_data`` makes it (``split_heldout(records, data.heldout_fraction, train.seed)``), so
the attacker and the evaluation only see prompts the hardening never trained on. Each held-out
set is split again, by prompt and deterministically: one part is the attacker's data, the other
the evaluation set. A caller with its own attacker data and evaluation sets passes them as
``data=SuiteData(...)`` instead.

Every attack starts from the model's pristine weights (kept on the CPU and restored after each
run; ``seamharden.attack.target``). With ``attack.benchmarks``, lm-eval scores each pristine model once
and each attack's final weights (``seamharden.attack.benchmarks``; not under ``budget: sweep``).
With ``attack.benign_control.enabled`` both models are also
fine-tuned on held-out benign records (``seamharden.attack.benign_control``); ``budget: sweep``
replaces the grid by an Optuna search per model (``seamharden.attack.sweep``).
The runner prints nothing; ``progress(description, done, total)`` reports optimizer steps, the
description naming the model, the attack (i of n), its step and the last evaluation's harmful and
benign loss: a live view for ``verify`` and the smoke test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from seamharden.attack.benchmarks import BenchmarkScore, BenchmarkSuite
from seamharden.attack.benign_control import control_configs
from seamharden.attack.evalset import EvalSettings, Judge
from seamharden.attack.finetune import ATTACK_DEFAULTS, attack_steps
from seamharden.attack.grid import attack_grid
from seamharden.attack.results import AttackRun, GradientSample, ModelKind, SuiteResult, attack_label, config_key
from seamharden.attack.scorers import load_judge
from seamharden.attack.sweep import sweep_models
from seamharden.attack.target import GRADIENT_BATCHES, GRADIENT_DIMS, AttackTarget, Ticker
from seamharden.attack.verdict import Verdict, verdict
from seamharden.cpu_memory import keep_freed_memory
from seamharden.data import fingerprint, load_records, split_heldout
from seamharden.errors import UserError
from seamharden.modeling import default_device
from seamharden.recipe.schema import AttackConfig, Recipe

Progress = Callable[[str, int, int], None]
"""(description, units done, units in total); a unit is one attack optimizer step or gradient batch."""

ATTACK_SPLIT = 0.5


@dataclass
class SuiteData:
    """Records ``{"prompt", "response"}`` of the attacker (``attack_*``) and of the evaluation (``eval_*``).

    ``suite_data(recipe)`` makes them from the recipe's held-out split; a caller may build its own.
    """

    attack_adv: list[dict]
    attack_bgn: list[dict]
    eval_adv: list[dict]
    eval_bgn: list[dict]

    def fingerprints(self) -> dict[str, str]:
        return {name: fingerprint(getattr(self, name)) for name in ("attack_adv", "attack_bgn", "eval_adv", "eval_bgn")}


def _split(records: list[dict], name: str, recipe: Recipe) -> tuple[list[dict], list[dict]]:
    _, held = split_heldout(records, recipe.data.heldout_fraction, recipe.train.seed)
    attack, evaluation = split_heldout(held, ATTACK_SPLIT, recipe.train.seed + 1) if len(held) > 1 else ([], [])
    if not attack or not evaluation:
        raise UserError(f"data.{name}: the held-out split has {len(held)} records, too few to split into "
                        f"attack and evaluation data; raise data.heldout_fraction or use more data")
    return attack, evaluation


def suite_data(recipe: Recipe) -> SuiteData:
    """The attack and evaluation records of ``recipe``'s data, deterministic in ``train.seed``.

    From ``recipe.attack.data`` when set, else split from the held-out part of D_adv / D_bgn.
    """
    sources = recipe.attack.data
    if sources is not None:
        loaded = {name: load_records(getattr(sources, name)) if getattr(sources, name) is not None else []
                  for name in ("attack_adv", "attack_bgn", "eval_adv", "eval_bgn")}
        empty = [name for name in ("attack_adv", "eval_adv", "eval_bgn") if not loaded[name]]
        if empty:
            raise UserError(f"attack.data.{empty[0]} has no records")
        return SuiteData(**loaded)
    attack_adv, eval_adv = _split(load_records(recipe.data.adv), "adv", recipe)
    attack_bgn, eval_bgn = _split(load_records(recipe.data.bgn), "bgn", recipe)
    return SuiteData(attack_adv, attack_bgn, eval_adv, eval_bgn)


def _units(configs: list[AttackConfig], gradients: bool) -> int:
    return sum(attack_steps(c) for c in configs) + (2 * GRADIENT_BATCHES if gradients else 0)


def _attack_one_model(ref: str, kind: ModelKind, recipe: Recipe, configs: list[AttackConfig],
                      controls: list[AttackConfig], data: SuiteData, settings: EvalSettings, judge: Judge | None,
                      device: torch.device, ticker: Ticker, gradients: bool, bench: BenchmarkSuite | None = None
                      ) -> tuple[list[AttackRun], list[AttackRun], list[GradientSample], float, list[BenchmarkScore]]:
    """The grid's attacks and the benign control's runs on one model;
    (runs, control runs, gradients, seconds, benchmark scores)."""
    target = AttackTarget(ref, kind, recipe, data, settings, judge, device, bench)
    samples = target.gradients(ticker) if gradients else []
    runs = [target.run(config, f"attack {i} of {len(configs)} ({attack_label(config)})", ticker)
            for i, config in enumerate(configs, 1)]
    control_runs = [target.run(config, f"benign control ({attack_label(config)})", ticker, control=True)
                    for config in controls]
    scores = target.benchmarks
    return runs, control_runs, samples, target.close(), scores


def suite_controls(recipe: Recipe, configs: list[AttackConfig], data: SuiteData) -> list[AttackConfig]:
    """The benign control's configs (none when off); UserError before any model loads if it has no data."""
    if not recipe.attack.benign_control.enabled:
        return []
    if not data.attack_bgn:
        raise UserError("attack.benign_control needs the attacker's benign records (attack.data.attack_bgn, or "
                        "data.bgn's held-out split)")
    return control_configs(recipe.attack, configs, len(data.attack_bgn))


def _settings(recipe: Recipe, eval_settings: EvalSettings | None) -> EvalSettings:
    return eval_settings or EvalSettings.from_section(recipe.attack)


def _judge(settings: EvalSettings, device: torch.device) -> Judge | None:
    return load_judge(settings.judge_model, device) if settings.judge_model else None


def _device(device: torch.device | None) -> torch.device:
    """The device the attacks run on (default: ``default_device``); on a CPU the process keeps its
    freed memory mapped from here on (``seamharden.cpu_memory``: fine-tuning steps without page faults)."""
    device = device or default_device()
    if device.type == "cpu":
        keep_freed_memory()
    return device


def run_attacks(model_ref: str, recipe: Recipe, *, kind: ModelKind = "base", device: torch.device | None = None,
                progress: Progress | None = None, eval_settings: EvalSettings | None = None,
                gradients: bool = True, data: SuiteData | None = None) -> SuiteResult:
    """The recipe's attacks on one model alone, recorded as ``kind``; no verdict (it needs both models).

    ``base_model`` and ``hardened_model`` of the result are both ``model_ref``; ``data`` as in ``run_suite``.
    Under ``budget: sweep`` the model's own step 0 is the yardstick of its trials.
    """
    device = _device(device)
    settings = _settings(recipe, eval_settings)
    data = data if data is not None else suite_data(recipe)
    judge = _judge(settings, device)
    if recipe.attack.budget == "sweep":
        runs, controls, samples, seconds, record = sweep_models([(kind, model_ref)], recipe, data, settings, judge,
                                                                device, Ticker(progress, 0), gradients)
        scores = []  # no benchmarks under a sweep (its trials are not the grid's attacks)
    else:
        configs = attack_grid(recipe.attack)
        control = suite_controls(recipe, configs, data)
        ticker = Ticker(progress, _units(configs + control, gradients))
        runs, controls, samples, took, scores = _attack_one_model(
            model_ref, kind, recipe, configs, control, data, settings, judge, device, ticker, gradients,
            BenchmarkSuite.from_settings(settings))
        seconds, record = {kind: took}, None
    return SuiteResult(base_model=model_ref, hardened_model=model_ref, budget=recipe.attack.budget, runs=runs,
                       benign_control=controls, sweep=record, gradients=samples,
                       benchmarks=scores,
                       extra=_extra(device, data, settings, seconds))


def run_benign_control(model_ref: str, recipe: Recipe, *, kind: ModelKind = "base", device: torch.device | None = None,
                       progress: Progress | None = None, eval_settings: EvalSettings | None = None,
                       data: SuiteData | None = None) -> list[AttackRun]:
    """The benign fine-tuning control alone on one model, recorded as ``kind`` (no attacks, no verdict).

    Its configs are ``control_configs`` of the recipe's grid, whether or not
    ``attack.benign_control.enabled`` is set; for comparing more models than a suite's two
    (``benchmarks/benign_control.py``). Not for ``budget: sweep``, whose configs come from its search.
    """
    if recipe.attack.budget == "sweep":
        raise UserError("the benign control alone needs a fixed attack grid (attack.budget smoke, paper or custom)")
    recipe = recipe.model_copy(deep=True)
    recipe.attack.benign_control.enabled = True
    device = _device(device)
    settings = _settings(recipe, eval_settings)
    data = data if data is not None else suite_data(recipe)
    control = suite_controls(recipe, attack_grid(recipe.attack), data)
    _, runs, _, _, _ = _attack_one_model(model_ref, kind, recipe, [], control, data, settings, _judge(settings, device),
                                      device, Ticker(progress, _units(control, False)), False)
    return runs


def run_suite(base: str, hardened: str, recipe: Recipe, *, device: torch.device | None = None,
              progress: Progress | None = None, eval_settings: EvalSettings | None = None,
              gradients: bool = True, data: SuiteData | None = None,
              base_results: SuiteResult | None = None) -> tuple[SuiteResult, Verdict]:
    """Attack ``base`` and ``hardened`` with the recipe's grid (per seed), sample gradients, decide.

    ``base`` / ``hardened``: Hub ids or local model directories, loaded with ``recipe.model``.
    ``eval_settings`` defaults to ``EvalSettings.from_section(recipe.attack)``. ``data``: the
    attacker's records and the evaluation sets; None: ``suite_data(recipe)`` (the recipe's
    held-out split). ``base_results``: an earlier suite's result holding the base's runs of this
    very grid, data and evaluation settings (``reused_base_side`` checks; attacks are seeded, so
    the runs would come out the same): they are taken instead of attacking the base again.
    Returns the results (``SuiteResult``) and ``verdict(result, recipe.attack.criteria)``.
    """
    device = _device(device)
    settings = _settings(recipe, eval_settings)
    data = data if data is not None else suite_data(recipe)
    models = [("base", base), ("hardened", hardened)]
    if recipe.attack.budget == "sweep":
        if base_results is not None:
            raise UserError("attack.budget=sweep searches the base anew: earlier base results cannot stand in")
        runs, controls, samples, seconds, record = sweep_models(models, recipe, data, settings,
                                                                _judge(settings, device), device,
                                                                Ticker(progress, 0), gradients)
        result = SuiteResult(base_model=base, hardened_model=hardened, budget="sweep", runs=runs,
                             benign_control=controls, sweep=record, gradients=samples,
                             extra=_extra(device, data, settings, seconds))
        return result, verdict(result, recipe.attack.criteria)
    configs = attack_grid(recipe.attack)
    control = suite_controls(recipe, configs, data)
    judge = _judge(settings, device)
    bench = BenchmarkSuite.from_settings(settings)
    runs, controls, samples, seconds, scores = [], [], [], {}, []
    if base_results is not None:
        runs, samples = reused_base_side(base_results, configs, data, settings, gradients)
        controls = reused_base_controls(base_results, control)
        labels = {None, *(attack_label(c) for c in configs)}
        scores = [b for b in base_results.benchmarks if b.model == "base" and b.attack in labels]
        seconds["base"], models = 0.0, models[1:]
    ticker = Ticker(progress, len(models) * _units(configs + control, gradients))
    for kind, ref in models:
        r, c, s, seconds[kind], b = _attack_one_model(ref, kind, recipe, configs, control, data, settings, judge,
                                                      device, ticker, gradients, bench)
        runs += r
        controls += c
        samples += s
        scores += b
    extra = _extra(device, data, settings, seconds) | ({"base_results_reused": True} if base_results else {})
    result = SuiteResult(base_model=base, hardened_model=hardened, budget=recipe.attack.budget, runs=runs,
                         benign_control=controls, gradients=samples, benchmarks=scores, extra=extra)
    return result, verdict(result, recipe.attack.criteria)


def reused_base_side(previous: SuiteResult, configs: list[AttackConfig], data: SuiteData,
                     settings: EvalSettings, gradients: bool) -> tuple[list[AttackRun], list[GradientSample]]:
    """The base's runs (in ``configs`` order) and gradient samples of ``previous``, if it measured the
    same experiment: every config of the grid, the same data fingerprints and evaluation settings.

    Raises ``UserError`` listing every mismatch. The base model itself is the caller's word (a
    report names it but does not fingerprint its weights).
    """
    found = {config_key(r.config): r for r in previous.runs_of("base")}
    problems = [f"no base run for {attack_label(c)}" for c in configs if config_key(c) not in found]
    before = previous.extra.get("data_fingerprints")
    if before != data.fingerprints():
        problems.append("its attack / evaluation data differ (data fingerprints)")
    if json.loads(json.dumps(previous.extra.get("eval_settings"))) != json.loads(json.dumps(asdict(settings))):
        problems.append("its evaluation settings differ (attack.eval_samples, scorers, generation)")
    base_samples = [g for g in previous.gradients if g.model == "base"]
    if gradients and not base_samples:
        problems.append("it has no gradient samples of the base")
    if problems:
        raise UserError("the base results cannot stand in for this suite: " + "; ".join(problems))
    return [found[config_key(c)] for c in configs], base_samples if gradients else []


def reused_base_controls(previous: SuiteResult, controls: list[AttackConfig]) -> list[AttackRun]:
    """The base's benign control runs of ``previous`` for ``controls`` (UserError naming any it lacks)."""
    found = {config_key(r.config): r for r in previous.controls_of("base")}
    lacking = [attack_label(c) for c in controls if config_key(c) not in found]
    if lacking:
        raise UserError("the base results cannot stand in for this suite: no base benign control run for "
                        + ", ".join(lacking))
    return [found[config_key(c)] for c in controls]


def _extra(device: torch.device, data: SuiteData, settings: EvalSettings, seconds: dict[str, float]) -> dict:
    return {
        "device": str(device),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "records": {"attack_adv": len(data.attack_adv), "attack_bgn": len(data.attack_bgn),
                    "eval_adv": min(len(data.eval_adv), settings.samples),
                    "eval_bgn": min(len(data.eval_bgn), settings.samples),
                    "generate_adv": min(len(data.eval_adv), settings.generate_prompts),
                    "generate_bgn": min(len(data.eval_bgn), settings.generate_prompts)},
        "data_fingerprints": data.fingerprints(),
        "eval_settings": asdict(settings),
        "attack_defaults": dict(ATTACK_DEFAULTS),
        "gradient_projection": {"kind": "count-sketch", "dims": GRADIENT_DIMS, "batches": GRADIENT_BATCHES},
    }
