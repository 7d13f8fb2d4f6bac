"""The hardening loop: SEAM steps with accumulation, clipping, checkpoints and resume.

With ``recipe.utility`` the step also adds the benign KL anchor (on a fresh benign batch)
and the utility controller checks the validation score, keeps the last within-budget
weights and ends the run on them (``seamharden.train.utility``). With ``seam.delay_restart`` the
run starts afresh at ``seam.beta_delay``: a new optimizer and schedule, and the anchor's reference
re-taken from the weights reached (kept under ``checkpoints/`` for resume).

Prints nothing: each finished step is appended to ``metrics.jsonl`` and handed to an
optional callback (the CLI draws the progress bar from it).

Under torchrun (an initialised process group of more than one rank) the same loop shards the
model with FSDP2 (``seamharden.distributed``): global batches split across ranks, the step's
sharded operations, sharded checkpoints; rank 0 alone writes ``metrics.jsonl`` and calls
``on_step``. docs/distributed.md.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from seamharden.core import gradvec
from seamharden.core.estimator import LOCAL, Autograd
from seamharden.core.step import SeamConfig, seam_step, trainable_parameters
from seamharden.data.formatting import to_device
from seamharden.data.seam_data import SeamData
from seamharden.distributed import checkpoint as sharded_checkpoint
from seamharden.distributed.runtime import World, any_rank, current_world, global_sum, split_batch
from seamharden.errors import ExitCode, UserError
from seamharden.recipe.schema import Recipe, TrainSection
from seamharden.train import checkpoint
from seamharden.train.optim import build_optimizer, build_scheduler, set_peak_lr
from seamharden.train.stall import StallWatch, output_vocab
from seamharden.train.utility import AnchorReference, Score, UtilityController, anchor_backward, reference_mode

METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
RESTART_REFERENCE = "restart-reference.safetensors"
"""Under ``checkpoints/``: the trainable weights at ``seam.beta_delay``, the restarted anchor's reference."""
TERMS = {"loss_ul": "L_ul (unlearning)", "loss_up": "L_up (utility preservation)", "loss_sd": "L_sd (self-destruction)"}


@dataclass
class TrainOutcome:
    steps_done: int
    finished: bool
    last_checkpoint: Path | None
    kept_step: int | None = None
    val_start: float | None = None


def seam_config(recipe: Recipe) -> SeamConfig:
    """The core step's settings, taken from the recipe's ``seam`` section by field name."""
    return SeamConfig.from_section(recipe.seam)


def step_config(cfg: SeamConfig, recipe: Recipe, done: int) -> SeamConfig:
    """The settings of the step after ``done`` steps: beta 0 during the first ``seam.beta_delay`` steps."""
    return replace(cfg, beta=0.0) if done < recipe.seam.beta_delay else cfg


def restarts_at(recipe: Recipe) -> int | None:
    """The step after which the run starts afresh (``seam.delay_restart``), else None."""
    return recipe.seam.beta_delay if recipe.seam.delay_restart else None


def phase_schedule(recipe: Recipe, done: int) -> TrainSection:
    """The learning-rate schedule's settings for the step after ``done`` steps.

    One schedule over ``train.steps``; with ``seam.delay_restart`` two, each with its own warm-up:
    over the first ``beta_delay`` steps, then over the rest (as two ``protect`` calls would run).
    """
    at = restarts_at(recipe)
    if at is None:
        return recipe.train
    return recipe.train.model_copy(update={"steps": at if done < at else recipe.train.steps - at})


def _restart_reference(model: torch.nn.Module, path: Path, save: bool) -> AnchorReference:
    """A frozen copy of ``model`` as the anchor's reference; its trainable weights written to ``path``
    (``save``, atomically) or read back from it (on resume: the copy then equals the one the run took)."""
    reference = AnchorReference(model, "copy")
    if save:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".tmp-" + path.name)
        save_file(checkpoint.trainable_state(model), tmp)
        tmp.replace(path)
    elif path.is_file():
        checkpoint.copy_weights(reference.frozen, load_file(path))
    else:
        raise UserError(f"cannot resume: {path.name}, the anchor reference taken at the restart "
                        "(seam.delay_restart), is missing from the run's checkpoints; start the run again")
    return reference


def _read_metrics(path: Path, upto: int) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= upto]


def _clip_(params, max_norm: float | None) -> float:
    """Clip the global gradient norm (accumulated in fp32); returns the norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    total = gradvec.norm(grads).item()
    if max_norm is not None and math.isfinite(total) and total > max_norm:
        for g in grads:
            g.mul_(max_norm / (total + 1e-6))
    return total


def _json_row(record: dict) -> str:
    """One metrics line: strict JSON, a non-finite float written as null (NaN: not measured or not checked)."""
    return json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()},
                      allow_nan=False)


def _try_next(lr: float, where: str) -> str:
    """What to try after a diverged or stalled run: the same directory, a lower peak learning rate."""
    return f"{where}; try --resume with a lower train.lr (e.g. train.lr={lr / 10:g})"


def _diverged(stats: dict[str, float], grad_norm: float) -> str | None:
    for key, name in TERMS.items():
        if not math.isfinite(stats[key]):
            return f"{name} is {stats[key]}"
    if not math.isfinite(grad_norm):
        return f"the combined gradient norm is {grad_norm}"
    return None


def train(
    model: torch.nn.Module,
    data: SeamData,
    recipe: Recipe,
    run_dir: Path,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    on_step: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    score: Score | None = None,
) -> TrainOutcome:
    """Run (or continue) ``recipe.train.steps`` SEAM steps on ``model``; state lives in ``run_dir``.

    ``score(model)`` rates the defender's benign validation records for the utility
    controller (required when ``recipe.utility.check_every > 0``). At the end the model
    holds the last within-budget weights when the controller is on.

    ``should_stop`` is polled after every step (the CLI sets it on Ctrl-C): the run then
    checkpoints that step and raises a one-line ``UserError`` with exit code 130.
    A run that diverges (a non-finite loss or gradient) or stops learning (``seamharden.train.stall``)
    raises a ``UserError`` with exit code 5; only checkpoints of weights from before the trouble
    are kept (a periodic checkpoint is put off while a stall streak runs). On resume the recipe's
    ``train.lr`` replaces the checkpoint's peak learning rate (the schedule's position is kept).
    A KeyboardInterrupt inside a step (a second Ctrl-C) writes nothing: the weights or the
    optimizer state may be half updated, so the last periodic checkpoint is what resumes.
    """
    cfg, train_cfg = seam_config(recipe), recipe.train
    world = current_world()
    check_world(recipe, world)
    utility = recipe.utility
    # The anchor's reference is the model before any step: taken before a checkpoint is restored.
    reference = AnchorReference(model, reference_mode(utility, recipe.model.lora is not None)) \
        if utility.anchor > 0 else None
    ops = _shard(model, reference, world) if world.distributed else LOCAL
    device = next(model.parameters()).device
    params = trainable_parameters(model)  # after sharding: the parameters are then DTensors
    optimizer = build_optimizer(params, train_cfg)
    scheduler = build_scheduler(optimizer, phase_schedule(recipe, 0))
    ckpt_root, metrics_path = run_dir / CHECKPOINTS, run_dir / METRICS
    restart = restarts_at(recipe)
    controller = UtilityController(utility, score, run_dir, world)

    start, last_ckpt = 0, None
    found = checkpoint.latest(ckpt_root) if resume else None
    if found is not None:
        if world.distributed:
            state = sharded_checkpoint.load(found, model, optimizer, world)
        else:
            if sharded_checkpoint.is_sharded(found):
                raise ValueError(f"checkpoint {found} holds shards of a torchrun run; resume it under torchrun")
            state = checkpoint.load(found, model)
            if restart is not None and state.step >= restart:  # the second phase's schedule and reference
                scheduler = build_scheduler(optimizer, phase_schedule(recipe, state.step))
                if reference is not None:
                    reference = None  # the starting weights' copy goes before the restart's is taken
                    reference = _restart_reference(model, ckpt_root / RESTART_REFERENCE, save=False)
            optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        set_peak_lr(optimizer, scheduler, train_cfg.lr)
        data.load_state_dict(state.data)
        checkpoint.set_rng_state(state.rng)
        if controller.enabled:
            controller.load_state_dict(state.extra["utility"], state.step)
        start, last_ckpt = state.step, found
    else:
        torch.manual_seed(train_cfg.seed)
        random.seed(train_cfg.seed)
        controller.begin(model)
    if world.is_main:
        kept = _read_metrics(metrics_path, start)
        metrics_path.write_text("".join(line + "\n" for line in kept))

    def snapshot(step: int, data_state: dict, rng: dict) -> Path:
        if world.distributed:
            path = sharded_checkpoint.save(ckpt_root, model, optimizer, checkpoint.TrainState(
                step, {}, scheduler.state_dict(), data_state, rng, {"utility": controller.state_dict()}), world)
        else:
            path = checkpoint.save(ckpt_root, model, checkpoint.TrainState(
                step, optimizer.state_dict(), scheduler.state_dict(), data_state, rng,
                {"utility": controller.state_dict()}))
        controller.checkpointed()
        return path

    step, watch, put_off = start, StallWatch(output_vocab(model)), False
    with metrics_path.open("a") if world.is_main else nullcontext() as log:
        while step < train_cfg.steps:
            try:
                record = _one_step(model, data, step_config(cfg, recipe, step), train_cfg, params, optimizer,
                                   scheduler, device, reference, controller.weight, ops, world)
            except KeyboardInterrupt:
                where = f"the last checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
                raise UserError(f"interrupted during step {step + 1}; {where}; continue with --resume",
                                ExitCode.INTERRUPTED) from None
            problem = _diverged(record, record["grad_norm"])
            if problem:
                keep = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written"
                raise UserError(f"training diverged at step {step + 1}: {problem}; "
                                + _try_next(train_cfg.lr, keep), ExitCode.DIVERGED)
            stalled = watch.update(step + 1, record)
            if stalled:
                last_ckpt = _drop_checkpoints_from(ckpt_root, watch.first - 1, last_ckpt, world.is_main)
                keep = (f"the last good checkpoint is {last_ckpt}" if last_ckpt else
                        "no checkpoint from before it is left (--resume starts again from step 0)")
                raise UserError(f"training stopped learning at step {step + 1}: {stalled} (since step "
                                f"{watch.first}); " + _try_next(train_cfg.lr, keep), ExitCode.DIVERGED)
            step += 1
            record["step"] = step
            record |= controller.after_step(step, model)
            if step == restart:  # start afresh from these weights (seam.delay_restart)
                optimizer = build_optimizer(params, train_cfg)
                scheduler = build_scheduler(optimizer, phase_schedule(recipe, step))
                if reference is not None:
                    reference = None  # the starting weights' copy goes before the restart's is taken
                    reference = _restart_reference(model, ckpt_root / RESTART_REFERENCE, save=True)
                controller.state.weight = utility.anchor
                record["restart"] = True
            if log is not None:
                log.write(_json_row(record) + "\n")
                log.flush()
            if on_step and world.is_main:
                on_step(record)
            stopping = stop_after is not None and step - start >= stop_after
            interrupted = any_rank(should_stop is not None and should_stop(), world)  # every rank stops together
            periodic = step % train_cfg.checkpoint_every == 0 or put_off
            put_off = periodic and watch.stalling  # weights of a stalling run are not worth a checkpoint yet
            if (periodic and not put_off) or step == train_cfg.steps or stopping or interrupted:
                last_ckpt = snapshot(step, data.state_dict(), checkpoint.rng_state())
                put_off = False
            if interrupted:
                raise UserError(f"interrupted after step {step}; checkpoint {last_ckpt}; continue with --resume",
                                ExitCode.INTERRUPTED)
            if stopping and step < train_cfg.steps:
                return TrainOutcome(step, False, last_ckpt)
    kept_step = controller.finish(model)
    return TrainOutcome(step, True, last_ckpt, kept_step, controller.state.start)


def check_world(recipe: Recipe, world: World) -> None:
    """The launched processes must be the ones the recipe was written (and its memory estimated) for."""
    if world.size != recipe.distributed.world_size:
        raise UserError(f"launched with {world.size} process{'es' if world.size > 1 else ''} but the recipe's "
                        f"distributed.world_size is {recipe.distributed.world_size}; set "
                        f"distributed.world_size={world.size} or launch {recipe.distributed.world_size}")


def _shard(model: torch.nn.Module, reference: AnchorReference | None, world: World) -> Autograd:
    """FSDP2 on ``model`` (and on the anchor's frozen copy) over all ranks; the step's sharded operations."""
    from seamharden.distributed.runtime import device_mesh
    from seamharden.distributed.sharded import ShardedAutograd, shard_model

    mesh = device_mesh(world, "cuda" if torch.cuda.is_available() else "cpu")
    modules = shard_model(model, mesh)
    if reference is not None and reference.frozen is not None:
        modules += shard_model(reference.frozen, mesh)  # resharded with the model's before each perturbation
    return ShardedAutograd(modules)


def _drop_checkpoints_from(root: Path, step: int, last: Path | None, main: bool = True) -> Path | None:
    """Delete the checkpoint ``last`` if it holds the weights after ``step`` or later; returns what is left.
    Only the ``main`` rank deletes."""
    if last is not None and int(last.name[len(checkpoint.PREFIX):]) >= step:
        if main:
            shutil.rmtree(last, ignore_errors=True)
        return checkpoint.latest(root) if main else None
    return last


def _one_step(model, data, cfg, train_cfg, params, optimizer, scheduler, device, reference, anchor_weight,
              ops: Autograd, world: World) -> dict:
    """One optimizer step over ``grad_accum`` micro-batches; returns the averaged statistics.

    With an anchor (``anchor_weight > 0``) each micro-batch also adds the gradient of
    ``anchor_weight * KL(p_ref || p)`` on the next anchor batch (``data.anchor_stream``: D_bgn's, or
    the anchor's own stream with ``utility.anchor_data``). Under torchrun each rank takes its
    rows of every global batch; the statistics (and ``tokens``) are those of the global batch.
    """
    def take(batch):
        return to_device(split_batch(batch, world) if world.distributed else batch, device)

    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    tokens = 0
    scale = 1.0 / train_cfg.grad_accum
    for _ in range(train_cfg.grad_accum):
        batches = [take(next(stream)) for stream in (data.adv, data.aln, data.bgn)]
        tokens += sum(int(b["attention_mask"].sum()) for b in batches)
        stats = seam_step(model, *batches, cfg, grad_scale=scale, params=params, ops=ops).as_dict()
        if reference is not None and anchor_weight > 0:
            anchor_batch = take(next(data.anchor_stream))
            tokens += int(anchor_batch["attention_mask"].sum())
            stats["anchor_kl"] = anchor_backward(model, reference, anchor_batch, anchor_weight * scale, params, ops)
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + value * scale
    totals["anchor_weight"] = anchor_weight if reference is not None else 0.0
    totals["beta"] = cfg.beta
    tokens = global_sum(tokens, world)
    grad_norm = _clip_(params, train_cfg.max_grad_norm)
    lr = scheduler.get_last_lr()[0]
    if math.isfinite(grad_norm):
        optimizer.step()
        scheduler.step()
    seconds = time.perf_counter() - started
    return {**totals, "grad_norm": grad_norm, "lr": lr, "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0}
