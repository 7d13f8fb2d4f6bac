"""One model under attack: loaded once, attacked many times, each run from its pristine weights.

``AttackTarget`` holds what every run on one model shares: the model and tokenizer, the encoded
evaluation set, the attacker's encoded data (harmful, benign for mixing) and the benign control's
training stream (the same benign records), and a CPU copy of the pristine weights restored after
every run. ``AttackTarget.run`` calls ``run_attack``, the suite's one fine-tuning loop, for the
grid's attacks, the sweep's trials and the benign control alike. With a ``BenchmarkSuite`` (lm-eval,
``attack.benchmarks``) the pristine model is scored once and every attack (not a control run) on its
final weights; the scores collect in ``AttackTarget.benchmarks``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import torch

from seamharden.attack.benchmarks import BenchmarkScore, BenchmarkSuite
from seamharden.attack.evalset import EvalSettings, Judge, prepare_eval
from seamharden.attack.finetune import AttackData, attack_steps, run_attack
from seamharden.attack.gradients import gradient_vectors
from seamharden.attack.results import AttackRun, EvalPoint, GradientSample, ModelKind, attack_label
from seamharden.data import encode_example, pad_id, resolve_template
from seamharden.modeling import load_model
from seamharden.recipe.schema import AttackConfig, Recipe

GRADIENT_BATCHES = 4
GRADIENT_DIMS = 128


class Ticker:
    """Counts units of work (optimizer steps, gradient batches) and forwards them to ``progress``."""

    def __init__(self, progress: Callable[[str, int, int], None] | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def advance(self, description: str, units: int = 1) -> None:
        self.done += units
        self.total = max(self.total, self.done)
        if self.progress is not None:
            self.progress(description, self.done, self.total)


class AttackTarget:
    """``ref`` loaded with ``recipe.model`` on ``device``, its data encoded; see the module docstring.

    ``data`` is a ``SuiteData`` (records of the attacker and of the evaluation).
    """

    def __init__(self, ref: str, kind: ModelKind, recipe: Recipe, data, settings: EvalSettings,
                 judge: Judge | None, device: torch.device, bench: BenchmarkSuite | None = None):
        self.started = time.perf_counter()
        self.kind, self.recipe, self.device = kind, recipe, device
        loaded = load_model(ref, recipe.model, device)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        template = resolve_template(self.tokenizer, recipe.data.template)
        max_length = recipe.data.max_length
        self.pad = pad_id(self.tokenizer)

        def encode(records: list[dict]) -> list[dict]:
            return [encode_example(self.tokenizer, r["prompt"], r["response"], template, max_length) for r in records]

        self.evalset = prepare_eval(self.tokenizer, data.eval_adv, data.eval_bgn, template, max_length, settings,
                                    judge)
        self.attack_data = AttackData(encode(data.attack_adv), encode(data.attack_bgn), self.pad)
        self.control_data = AttackData(self.attack_data.bgn, [], self.pad)
        self.pristine = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.bench = bench
        self.benchmarks: list[BenchmarkScore] = bench.score(self.model, self.tokenizer, kind, None, 0) if bench else []

    def gradients(self, ticker: Ticker) -> list[GradientSample]:
        """Projected per-batch gradients of the evaluation's D_adv and D_bgn (for the PCA plot)."""
        samples = []
        for stream, examples in (("adv", self.evalset.adv), ("bgn", self.evalset.bgn)):
            vectors = gradient_vectors(self.model, examples, self.pad, batches=GRADIENT_BATCHES, batch_size=4,
                                       dims=GRADIENT_DIMS, seed=self.recipe.train.seed)
            samples.append(GradientSample(model=self.kind, stream=stream, vectors=vectors))
            ticker.advance(f"{self.kind}: gradients of D_{stream}", GRADIENT_BATCHES)
        return samples

    def run(self, config: AttackConfig, label: str, ticker: Ticker, *, control: bool = False) -> AttackRun:
        """One run of ``config`` (on the benign control's stream when ``control``), then the pristine weights back."""
        done = ticker.done
        label = f"{self.kind}: {label}"

        def on_step(step: int, total: int, last: EvalPoint) -> None:
            ticker.done = done + step - 1
            ticker.advance(f"{label} step {step}/{total}, harmful {last.harmful_loss:.3g} benign "
                           f"{last.benign_loss:.3g} (step {last.step})")

        after: list = []  # the benchmark rows of this attack's final weights (LoRA adapters still on)
        on_end = (lambda m: after.append(self.bench.run(m, self.tokenizer))) \
            if self.bench is not None and not control else None
        try:
            points = run_attack(self.model, self.tokenizer, config, self.control_data if control else self.attack_data,
                                self.evalset, eval_every=self.recipe.attack.eval_every,
                                model_section=self.recipe.model, on_step=on_step, on_end=on_end)
        finally:
            self.model.load_state_dict(self.pristine)
        if after:
            self.benchmarks += self.bench.scores(after.pop(), self.kind, attack_label(config), points[-1].step)
        ticker.done = done + attack_steps(config) - 1
        ticker.advance(label)
        return AttackRun(config=config, model=self.kind, points=points)

    def close(self) -> float:
        """Free the model (and the GPU cache); returns the seconds since loading."""
        del self.model, self.pristine
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return time.perf_counter() - self.started
