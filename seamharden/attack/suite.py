"""The attack suite: the same harmful fine-tuning attacks on the base and the hardened model.

Data (``suite_data``): the held-out split of D_adv / D_bgn is recomputed exactly as
``build_seam_data`` makes it (``split_heldout(records, data.heldout_fraction, train.seed)``), so
the attacker and the evaluation only see prompts the hardening never trained on. Each held-out
set is split again, by prompt and deterministically: one part is the attacker's data, the other
the evaluation set. A caller with its own attacker data and evaluation sets passes them as
``data=SuiteData(...)`` instead.

Every attack starts from the model's pristine weights (kept on the CPU and restored after each
run). With ``attack.benchmarks``, lm-eval scores each pristine model once and each attack's final
weights (``seamharden.attack.benchmarks``). The runner prints nothing; ``progress(description, done,
total)`` reports optimizer steps, the description naming the model, the attack (i of n), its step
and the last evaluation's harmful and benign loss: a live view for ``verify`` and the smoke test.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from seamharden.attack.benchmarks import BenchmarkScore, BenchmarkSuite
from seamharden.attack.evalset import EvalSettings, Judge, prepare_eval
from seamharden.attack.finetune import ATTACK_DEFAULTS, AttackData, attack_steps, run_attack
from seamharden.attack.gradients import gradient_vectors
from seamharden.attack.grid import attack_grid
from seamharden.attack.results import (
    AttackRun,
    EvalPoint,
    GradientSample,
    ModelKind,
    SuiteResult,
    attack_label,
    config_key,
)
from seamharden.attack.scorers import load_judge
from seamharden.attack.verdict import Verdict, verdict
from seamharden.data import encode_example, fingerprint, load_records, pad_id, resolve_template, split_heldout
from seamharden.errors import UserError
from seamharden.modeling import default_device, load_model
from seamharden.recipe.schema import AttackConfig, Recipe

Progress = Callable[[str, int, int], None]
"""(description, units done, units in total); a unit is one attack optimizer step or gradient batch."""

ATTACK_SPLIT = 0.5
GRADIENT_BATCHES = 4
GRADIENT_DIMS = 128


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


class _Ticker:
    """Counts units of work and forwards them to the optional ``Progress`` callback."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def advance(self, description: str, units: int = 1) -> None:
        self.done += units
        if self.progress is not None:
            self.progress(description, self.done, self.total)


def _units(configs: list[AttackConfig], gradients: bool) -> int:
    return sum(attack_steps(c) for c in configs) + (2 * GRADIENT_BATCHES if gradients else 0)


def _attack_one_model(ref: str, kind: ModelKind, recipe: Recipe, configs: list[AttackConfig], data: SuiteData,
                      settings: EvalSettings, judge: Judge | None, device: torch.device, ticker: _Ticker,
                      gradients: bool, bench: BenchmarkSuite | None = None
                      ) -> tuple[list[AttackRun], list[GradientSample], float, list[BenchmarkScore]]:
    start = time.perf_counter()
    loaded = load_model(ref, recipe.model, device)
    model, tokenizer = loaded.model, loaded.tokenizer
    template = resolve_template(tokenizer, recipe.data.template)
    max_length = recipe.data.max_length
    pad = pad_id(tokenizer)

    def encode(records: list[dict]) -> list[dict]:
        return [encode_example(tokenizer, r["prompt"], r["response"], template, max_length) for r in records]

    evalset = prepare_eval(tokenizer, data.eval_adv, data.eval_bgn, template, max_length, settings, judge)
    attack_data = AttackData(encode(data.attack_adv), encode(data.attack_bgn), pad)
    samples: list[GradientSample] = []
    if gradients:
        for stream, examples in (("adv", evalset.adv), ("bgn", evalset.bgn)):
            vectors = gradient_vectors(model, examples, pad, batches=GRADIENT_BATCHES, batch_size=4,
                                       dims=GRADIENT_DIMS, seed=recipe.train.seed)
            samples.append(GradientSample(model=kind, stream=stream, vectors=vectors))
            ticker.advance(f"{kind}: gradients of D_{stream}", GRADIENT_BATCHES)

    scores = bench.score(model, tokenizer, kind, None, 0) if bench is not None else []
    after: list = []  # on_end's rows of the attack that just ran, scored on its final weights
    pristine = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    runs = []
    for i, config in enumerate(configs, 1):
        label = f"{kind}: attack {i} of {len(configs)} ({attack_label(config)})"
        done = ticker.done

        def on_step(step: int, total: int, last: EvalPoint, label=label, done=done) -> None:
            ticker.done = done + step - 1
            ticker.advance(f"{label} step {step}/{total}, harmful {last.harmful_loss:.3g} benign "
                           f"{last.benign_loss:.3g} (step {last.step})")

        points = run_attack(model, tokenizer, config, attack_data, evalset, eval_every=recipe.attack.eval_every,
                            model_section=recipe.model, on_step=on_step,
                            on_end=(lambda m: after.append(bench.run(m, tokenizer))) if bench else None)
        if after:
            scores += bench.scores(after.pop(), kind, attack_label(config), points[-1].step)
        ticker.done = done + attack_steps(config) - 1
        ticker.advance(label)
        runs.append(AttackRun(config=config, model=kind, points=points))
        model.load_state_dict(pristine)
    del model, loaded, pristine
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return runs, samples, time.perf_counter() - start, scores


def _settings(recipe: Recipe, eval_settings: EvalSettings | None) -> EvalSettings:
    return eval_settings or EvalSettings.from_section(recipe.attack)


def _judge(settings: EvalSettings, device: torch.device) -> Judge | None:
    return load_judge(settings.judge_model, device) if settings.judge_model else None


def run_attacks(model_ref: str, recipe: Recipe, *, kind: ModelKind = "base", device: torch.device | None = None,
                progress: Progress | None = None, eval_settings: EvalSettings | None = None,
                gradients: bool = True, data: SuiteData | None = None) -> SuiteResult:
    """The recipe's attacks on one model alone, recorded as ``kind``; no verdict (it needs both models).

    ``base_model`` and ``hardened_model`` of the result are both ``model_ref``; ``data`` as in ``run_suite``.
    """
    device = device or default_device()
    configs = attack_grid(recipe.attack)
    settings = _settings(recipe, eval_settings)
    data = data if data is not None else suite_data(recipe)
    bench = BenchmarkSuite.from_settings(settings)
    ticker = _Ticker(progress, _units(configs, gradients))
    runs, samples, seconds, scores = _attack_one_model(model_ref, kind, recipe, configs, data, settings,
                                                       _judge(settings, device), device, ticker, gradients, bench)
    return SuiteResult(base_model=model_ref, hardened_model=model_ref, budget=recipe.attack.budget, runs=runs,
                       gradients=samples, benchmarks=scores, extra=_extra(device, data, settings, {kind: seconds}))


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
    device = device or default_device()
    configs = attack_grid(recipe.attack)
    settings = _settings(recipe, eval_settings)
    data = data if data is not None else suite_data(recipe)
    bench = BenchmarkSuite.from_settings(settings)
    judge = _judge(settings, device)
    runs, samples, seconds, scores = [], [], {}, []
    models = [("base", base), ("hardened", hardened)]
    if base_results is not None:
        runs, samples = reused_base_side(base_results, configs, data, settings, gradients)
        labels = {None, *(attack_label(c) for c in configs)}
        scores = [b for b in base_results.benchmarks if b.model == "base" and b.attack in labels]
        seconds["base"], models = 0.0, models[1:]
    ticker = _Ticker(progress, len(models) * _units(configs, gradients))
    for kind, ref in models:
        r, s, seconds[kind], b = _attack_one_model(ref, kind, recipe, configs, data, settings, judge, device,
                                                   ticker, gradients, bench)
        runs += r
        samples += s
        scores += b
    extra = _extra(device, data, settings, seconds) | ({"base_results_reused": True} if base_results else {})
    result = SuiteResult(base_model=base, hardened_model=hardened, budget=recipe.attack.budget, runs=runs,
                         gradients=samples, benchmarks=scores, extra=extra)
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
