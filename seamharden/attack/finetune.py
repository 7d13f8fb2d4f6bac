"""One harmful fine-tuning attack, as an attacker with the published weights would run it.

The optimisation is the ``AttackConfig``'s: schedule (cosine or constant after a linear
warm-up of ``warmup_ratio``, as HF Trainer), AdamW weight decay, gradient-norm clipping (None:
none). Its defaults are the reference evaluation of SEAM (HF Trainer in ``scripts/eval.sh`` of
github.com/ZJUWYH/seam): cosine, 10 % warm-up, weight decay 0.01, clipping at 1.0
(``ATTACK_DEFAULTS``). SGD and Adagrad are torch's, without weight decay.
LoRA attacks adapt every linear layer but the LM head (rank ``config.lora_rank``, 16 by default,
alpha twice the rank, no dropout).

``run_attack`` is the one fine-tuning loop of the suite: the harmful attacks, the sweep's trials
and the benign fine-tuning control (``AttackData.adv`` is then the benign records) all run here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from seamharden.attack.evaluate import EvalSet, evaluate
from seamharden.attack.results import EvalPoint
from seamharden.core.losses import lm_loss
from seamharden.data import collate, to_device
from seamharden.modeling import attach_lora
from seamharden.recipe.schema import AttackConfig, LoraSection, ModelSection

ATTACK_DEFAULTS = {name: AttackConfig.model_fields[name].default
                   for name in ("scheduler", "warmup_ratio", "weight_decay", "max_grad_norm")}
"""The reference evaluation's optimisation settings: the ``AttackConfig`` defaults."""
ATTACK_LORA = LoraSection(r=16, alpha=32.0, dropout=0.0, target_modules="all-linear")

StepCallback = Callable[[int, int, EvalPoint], None]
"""Called after every optimizer step (and its evaluation, if any) with (step, total steps, the last evaluation),
for a live view."""


@dataclass
class AttackData:
    """The attacker's encoded examples (``encode_example`` dicts): ``adv`` the stream fine-tuned on (harmful;
    benign records in the benign control), ``bgn`` benign examples for mixing."""

    adv: list[dict[str, list[int]]]
    bgn: list[dict[str, list[int]]]
    pad_token_id: int


def benign_per_batch(config: AttackConfig) -> int:
    """Benign examples in each batch: ``round(benign_mix * batch_size)``, leaving at least one harmful."""
    return min(config.batch_size - 1, round(config.benign_mix * config.batch_size))


def attack_steps(config: AttackConfig) -> int:
    """``config.steps``, or one epoch over ``config.samples`` harmful samples."""
    if config.steps is not None:
        return config.steps
    return math.ceil(config.samples / (config.batch_size - benign_per_batch(config)))


def _endless(examples: Sequence[dict], rng: random.Random) -> Iterator[dict]:
    """Every example once per epoch, in a fresh shuffled order each epoch."""
    while True:
        order = list(range(len(examples)))
        rng.shuffle(order)
        yield from (examples[i] for i in order)


def attack_batches(config: AttackConfig, data: AttackData) -> Iterator[dict[str, torch.Tensor]]:
    """Collated batches ``[B, T]``: ``batch_size - k`` harmful and ``k`` benign examples each.

    The harmful pool is the first ``config.samples`` attack examples (cycled when fewer exist);
    order is drawn from ``config.seed`` only, so base and hardened see the same batches.
    """
    if not data.adv:
        raise ValueError("the attack needs at least one harmful example")
    k = benign_per_batch(config)
    if k and not data.bgn:
        raise ValueError("benign_mix > 0 needs benign examples")
    harmful = _endless(data.adv[: config.samples], random.Random(f"attack/{config.seed}/adv"))
    benign = _endless(data.bgn, random.Random(f"attack/{config.seed}/bgn")) if k else iter(())
    while True:
        picked = [next(harmful) for _ in range(config.batch_size - k)] + [next(benign) for _ in range(k)]
        yield collate(picked, data.pad_token_id)


def _optimizer(config: AttackConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=config.lr)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _schedule(config: AttackConfig, optimizer: torch.optim.Optimizer, total: int):
    """HF Trainer's schedules: linear warm-up over ``ceil(warmup_ratio * total)`` steps, then cosine or constant."""
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    warmup = math.ceil(config.warmup_ratio * total)
    if config.scheduler == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return get_cosine_schedule_with_warmup(optimizer, warmup, total)


def _eval_steps(total: int, eval_every: int) -> set[int]:
    return {0, total, *range(eval_every, total, eval_every)}


def run_attack(model, tokenizer, config: AttackConfig, data: AttackData, evalset: EvalSet, *, eval_every: int,
               model_section: ModelSection, on_step: StepCallback | None = None,
               on_end: Callable[[Any], None] | None = None) -> list[EvalPoint]:
    """Fine-tune ``model`` IN PLACE on the attack data; evaluations at step 0, every ``eval_every`` and the end.

    ``config.eval_every``, when set, replaces ``eval_every``.

    A LoRA attack wraps the model in adapters and removes them at the end (the base weights are
    untouched); a full attack changes every weight, so the caller restores them afterwards.
    A non-finite training loss ends the attack with an evaluation at that step.
    ``on_end(attacked model)`` runs on the final weights, before LoRA adapters are removed.
    """
    torch.manual_seed(config.seed)
    for p in model.parameters():
        p.requires_grad_(True)
    lora = ATTACK_LORA.model_copy(update={"r": config.lora_rank, "alpha": 2.0 * config.lora_rank})
    target = attach_lora(model, model_section.model_copy(update={"lora": lora})) if config.method == "lora" else model
    total = attack_steps(config)
    params = [p for p in target.parameters() if p.requires_grad]
    optimizer = _optimizer(config, params)
    schedule = _schedule(config, optimizer, total)
    device = next(model.parameters()).device
    evals = _eval_steps(total, config.eval_every or eval_every)
    points = [evaluate(target, tokenizer, evalset, 0)]
    target.train()
    try:
        for step, batch in zip(range(1, total + 1), attack_batches(config, data), strict=False):
            batch = to_device(batch, device)
            loss = lm_loss(target, batch)
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                points.append(evaluate(target, tokenizer, evalset, step))
                break
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            schedule.step()
            if step in evals:
                points.append(evaluate(target, tokenizer, evalset, step))
            if on_step is not None:
                on_step(step, total, points[-1])
        if on_end is not None:
            on_end(target)
    finally:
        optimizer.zero_grad(set_to_none=True)
        if target is not model:
            target.unload()
    return points
