"""``seamharden protect MODEL [OUTPUT_DIR] --recipe NAME|PATH [KEY=VALUE ...]``."""

from __future__ import annotations

import functools
import json
import shlex
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seamharden.errors import ExitCode, UserError

if TYPE_CHECKING:
    from rich.console import Console

VERDICT_EXIT = {"pass": ExitCode.OK, "fail": ExitCode.ROBUSTNESS_FAILED, "inconclusive": ExitCode.INCONCLUSIVE}
"""protect's exit code by smoke-test verdict: the same as ``seamharden verify``'s."""


class _Bar:
    """The live view on a terminal: hardening steps, then the smoke test's attacks; each bar has its figures on
    a line of its own below it, cut to the terminal's width (the step count and ETA stay readable at 80 columns)."""

    def __init__(self, console: Console, total: int):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class TwoLines(Progress):
            def get_renderables(self):
                for task in self.tasks:
                    yield self.make_tasks_table([task])
                    yield Text("  " + task.fields.get("stats", ""), no_wrap=True, overflow="ellipsis")

        self.progress = TwoLines(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False,
        )
        self.task = self.progress.add_task("hardening", total=total, stats="loading")
        self.smoke = None
        self.print = self.progress.console.print

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def step(self, record: dict, total: int) -> None:
        self.progress.update(self.task, completed=record["step"], stats=_stats_line(record))

    def stage(self, name: str) -> None:
        if name != "training":
            self.progress.update(self.task, stats=name)

    def attack(self, description: str, done: int, total: int) -> None:
        if self.smoke is None:
            self.smoke = self.progress.add_task("smoke test", total=total, stats="")
            self.progress.update(self.task, stats="smoke test")
        self.progress.update(self.smoke, completed=done, total=total, stats=description)


class _Quiet:
    """The live view of a rank other than 0 under torchrun: rank 0 alone prints."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def print(self, text: str) -> None:
        return None

    def step(self, record: dict, total: int) -> None:
        return None

    def stage(self, name: str) -> None:
        return None

    def attack(self, description: str, done: int, total: int) -> None:
        return None


class _Lines:
    """The live view when stderr is not a terminal (a log file, CI): one plain line every ``every`` steps,
    each stage, and each attack of the smoke test at its start and end."""

    def __init__(self, total: int, every: int | None = None):
        import time

        self.total, self.every = total, every or max(1, total // 20)
        self.clock, self.started = time.monotonic, time.monotonic()
        self.last_attack = None

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def print(self, text: str) -> None:
        click.echo(text, err=True)

    def step(self, record: dict, total: int) -> None:
        step = record["step"]
        if step % self.every and step != total:
            return
        elapsed = self.clock() - self.started
        self.print(f"step {step}/{total} {_stats_line(record)} elapsed {_clock(elapsed)}")

    def stage(self, name: str) -> None:
        if name != "training":
            self.print(f"stage: {name}")

    def attack(self, description: str, done: int, total: int) -> None:
        name, _, step = description.partition(", step ")
        done_steps, _, steps = step.split(",")[0].partition("/")
        if name != self.last_attack or (steps and done_steps == steps):
            self.last_attack = name
            self.print(f"smoke test {done}/{total}: {description}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _stats_line(r: dict) -> str:
    return (f"ul {r['loss_ul']:.3f} up {r['loss_up']:.3f} sd {r['loss_sd']:+.3f} "
            f"cos {r['cosine']:+.3f} {r['tokens_per_s']:.0f} tok/s")


def _print_plan(recipe, plan: dict) -> None:
    """Plain text on stdout (no wrapping): the recipe as YAML, then ``#`` comment lines; the whole is valid YAML."""
    from seamharden.recipe.loading import dump_recipe_yaml
    from seamharden.recipe.memory import GIB

    click.echo(dump_recipe_yaml(recipe), nl=False)
    click.echo(f"# model {plan['model']}: {plan['parameters']:,} parameters, "
               f"{plan['trainable_parameters']:,} trainable; recipe hash {plan['recipe_hash'][:12]}")
    dtype = recipe.model.dtype
    resolved = f"auto -> {plan['dtype']} on this machine ({plan['device']})" if dtype == "auto" else dtype
    memory = plan["memory_bytes"]
    per_gpu = f", per GPU of {plan['world_size']} (FSDP2)" if plan.get("world_size", 1) > 1 else ""
    click.echo(f"# model.dtype {resolved}; memory estimate (GiB, {plan['dtype']} weights{per_gpu}): " + ", ".join(
        f"{k} {v / GIB:.2f}" for k, v in memory.items() if k not in ("pageable", "disk_kept_copies")))
    if plan.get("attack_memory_bytes"):
        attack = plan["attack_memory_bytes"]
        click.echo(f"# attack suite, a later peak (GiB{per_gpu}): " + ", ".join(
            f"{k} {v / GIB:.2f}" for k, v in attack.items() if k != "host_pristine_copy")
            + f"; host memory for the pristine copy {attack['host_pristine_copy'] / GIB:.2f}")
    if memory.get("disk_kept_copies"):
        disk = memory["disk_kept_copies"] / GIB
        click.echo(f"# disk for the utility controller's kept weights: up to {disk:.2f} GiB")


def _check_push_target(repo_id: str, endpoint: str | None) -> dict:
    """Validate --push-to and find the token before hours of training, not after."""
    from seamharden.hub.publish import REPO_ID
    from seamharden.hub.resolve import resolve_endpoint, resolve_token

    if not REPO_ID.match(repo_id):
        raise UserError(f"invalid repo id {repo_id!r} for --push-to: expected ORG/NAME")
    token = resolve_token()
    if not token:
        raise UserError("--push-to needs a Hugging Face token: set HF_TOKEN or run `hf auth login`")
    return {"endpoint": resolve_endpoint(endpoint), "token": token}


class _Interrupts:
    """SIGINT or SIGTERM while training: finish the step, checkpoint, exit 130 (SIGINT) or 143 (SIGTERM);
    a second signal stops at once. In any other stage a signal stops at once (``translate`` then gives
    SIGTERM its exit code and one line)."""

    def __init__(self) -> None:
        self.requested = False
        self.training = False
        self.signum: int | None = None
        self.stage = "starting"

    def handler(self, signum, frame) -> None:
        self.signum = signum
        if self.requested or not self.training:
            raise KeyboardInterrupt
        self.requested = True

    def should_stop(self) -> bool:
        return self.requested

    def on_stage(self, name: str) -> None:
        self.stage = name
        self.training = name == "training"

    def translate(self, err: BaseException) -> BaseException:
        """The error to end with: SIGTERM's ends say so and exit 143; everything else unchanged."""
        if self.signum != signal.SIGTERM:
            return err
        if isinstance(err, UserError) and err.exit_code == ExitCode.INTERRUPTED:
            return UserError(f"terminated (SIGTERM): {err}", ExitCode.TERMINATED)
        if isinstance(err, KeyboardInterrupt):
            return UserError(f"terminated (SIGTERM) while {self.stage}; nothing of this stage was kept; "
                             "run again (with --resume if a checkpoint was written)", ExitCode.TERMINATED)
        return err


def _launched_world_size() -> int:
    """The number of processes torchrun (or another launcher setting WORLD_SIZE) started: 1 without one.

    The CLI edge alone reads the launcher's environment; library code asks torch.distributed.
    """
    import os

    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise UserError(f"the launcher set WORLD_SIZE={value!r}, not a number of processes") from None


@contextmanager
def _process_group(recipe, launched: int):
    """Join the launcher's process group when it started more than one process (left on exit)."""
    if launched == 1:
        from seamharden.distributed.runtime import World

        yield World()
        return
    if recipe.distributed.world_size != launched:
        raise UserError(f"torchrun started {launched} processes but the recipe's distributed.world_size is "
                        f"{recipe.distributed.world_size}; pass distributed.world_size={launched} or launch "
                        f"--nproc_per_node {recipe.distributed.world_size}")
    import torch.distributed as dist

    from seamharden.distributed.runtime import init_process_group

    world = init_process_group(recipe.distributed.timeout_s)
    try:
        yield world
    finally:
        dist.destroy_process_group()


@contextmanager
def _graceful_interrupt():
    interrupts = _Interrupts()
    previous = {sig: signal.signal(sig, interrupts.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupts
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command("protect")
@click.argument("model")
@click.argument("output_dir", required=False, type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--recipe", "recipe_name", default="default", show_default=True,
              help="Packaged recipe name or YAML path.")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe and a memory estimate, then exit.")
@click.option("--resume", is_flag=True, help="Continue an unfinished run in OUTPUT_DIR from its last checkpoint.")
@click.option("--no-smoke-test", is_flag=True,
              help="Skip the attack smoke test (the model cannot be pushed without --force).")
@click.option("--base-results", type=click.Path(exists=True), metavar="REPORT",
              help="report.json (or its directory) of an earlier smoke test or `seamharden attack` of the same base "
                   "with this recipe's attack grid and data: reuse its base runs instead of attacking the base again.")
@click.option("--stop-after", type=click.IntRange(min=1), help="Run at most this many steps now, checkpoint, and exit.")
@click.option("--push-to", metavar="ORG/NAME", help="Publish the finished directory to this Hub repo.")
@click.option("--private", is_flag=True, help="Create the Hub repo as private.")
@click.option("--revision", help="Hub branch to push to.")
@click.option("--commit-message", help="Hub commit message.")
@click.option("--force", is_flag=True, help="Push even though the smoke test failed or did not run.")
@click.option("--endpoint", help="Hub endpoint (default: huggingface_hub's configured one).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def protect_command(model, output_dir, overrides, recipe_name, dry_run, resume, no_smoke_test, base_results,
                    stop_after,
                    push_to, private, revision, commit_message, force, endpoint, as_json) -> int:
    """Harden MODEL (Hub id or local directory) into OUTPUT_DIR with SEAM.

    KEY=VALUE pairs override recipe keys with dotted paths, e.g. train.lr=1e-4 seam.beta=0.1.
    An OUTPUT_DIR written in the form key=value is read as an override.
    Under ``torchrun --nproc_per_node N -m seamharden protect ...`` every process runs this and the model is
    sharded with FSDP2 (docs/distributed.md); rank 0 alone prints.
    """
    from seamharden.recipe.loading import load_recipe
    from seamharden.references import check_model_available, check_model_reference

    if output_dir is not None and "=" in str(output_dir):
        overrides, output_dir = (str(output_dir), *overrides), None
    recipe = load_recipe(recipe_name, overrides)
    check_model_reference(model)
    if not dry_run:  # an unreachable Hub or a missing repo: one line before torch is imported
        check_model_available(model, recipe.model.revision)
    from seamharden.protect import (
        check_output_path,
        default_output_dir,
        dry_run_plan,
        load_base_results,
        with_model,
    )

    if dry_run:
        _print_plan(with_model(recipe, model), dry_run_plan(model, recipe))
        return ExitCode.OK
    out_dir = output_dir or default_output_dir(model)
    check_output_path(out_dir)
    push_target = _check_push_target(push_to, endpoint) if push_to else None
    reused = load_base_results(base_results, recipe) if base_results and not no_smoke_test else None
    launched = _launched_world_size()
    with _process_group(recipe, launched) as world:
        return _harden(model, out_dir, overrides, recipe_name, recipe, resume, no_smoke_test, stop_after, reused,
                       push_to, push_target, private, revision, commit_message, force, as_json, world)


def run_header(model, out_dir, recipe, processes: str = "") -> str:
    """The run's one-line header: steps, beta (and its delay, when L_sd is on at all; the restart), optimizer,
    estimator, utility budget (the anchor's extra data: a built-in set by name, never a local path), and
    ``processes`` (the sharding phrase under torchrun, else "")."""
    seam, utility = recipe.seam, recipe.utility
    estimator = seam.difference if seam.difference == "hvp" else (
        f"{seam.difference} differences, {seam.step_policy} step, self-check {'on' if seam.self_check else 'off'}"
        f"{', grad L_ul in the perturbed pass' if seam.unlearn_pass == 'perturbed' else ''}")
    extra = utility.anchor_data
    anchor_on = "" if extra is None else (
        f" on D_bgn + {extra.path if extra.kind == 'builtin' else 'utility.anchor_data'}")
    budget = (f", anchor {utility.anchor:g}{anchor_on}" if utility.anchor else "") + (
        f", utility controller every {utility.check_every} steps" if utility.controller else "")
    delay = f" after {seam.beta_delay} steps at 0" if seam.beta_delay and seam.beta else ""
    delay += f", fresh optimizer and anchor at step {seam.beta_delay}" if seam.delay_restart else ""
    return (f"hardening {model} -> {out_dir} with recipe {recipe.name} ({recipe.train.steps} steps, beta "
            f"{seam.beta:g}{delay}, {recipe.train.optimizer}, L_sd estimator {estimator}{budget}{processes})")


def _harden(model, out_dir, overrides, recipe_name, recipe, resume, no_smoke_test, stop_after, reused, push_to,
            push_target, private, revision, commit_message, force, as_json, world) -> int:
    """protect_command once every check before loading has passed: the run, its live view (rank 0's
    alone under torchrun), the summary and the push."""
    import sys

    from rich.console import Console

    from seamharden.core.estimator import CONSISTENCY_THRESHOLD, consistency_passes
    from seamharden.distributed.sharded import SHARDING
    from seamharden.protect import protect, run_smoke_test

    total = recipe.train.steps
    if not world.is_main:
        view = _Quiet()
    else:
        view = _Bar(Console(stderr=True), total) if sys.stderr.isatty() else _Lines(total)
    processes = f", {world.size} processes, FSDP2 sharding {SHARDING}" if world.distributed else ""
    header = [run_header(model, out_dir, recipe, processes)]
    warned: list[int] = []
    with view, _graceful_interrupt() as interrupts:
        smoke_test = None if no_smoke_test else functools.partial(run_smoke_test, base_results=reused,
                                                                  progress=view.attack)

        def on_step(record: dict) -> None:
            view.step(record, total)
            value = float(record.get("estimate_consistency", float("nan")))
            if not warned and consistency_passes(value) is False:
                warned.append(record["step"])
                view.print(
                    f"warning: the L_sd estimate failed its self-check at step {record['step']} (consistency "
                    f"{value:.3g} > {CONSISTENCY_THRESHOLD:g}); try seam.difference=hvp or a smaller "
                    "seam.relative_step (docs/method.md); the report counts every such step")

        def on_stage(name: str) -> None:
            if header:  # once every check before loading has passed (they end in one line alone)
                view.print(header.pop())
            interrupts.on_stage(name)
            view.stage(name)

        try:
            outcome = protect(model, out_dir, recipe, resume=resume, stop_after=stop_after,
                              smoke_test=smoke_test, on_step=on_step,
                              should_stop=interrupts.should_stop, on_stage=on_stage)
        except (UserError, KeyboardInterrupt) as err:
            raise interrupts.translate(err) from None
    verdict = (outcome.smoke_test or {}).get("verdict")
    code = VERDICT_EXIT.get(verdict, ExitCode.OK) if outcome.finished else ExitCode.OK
    if not world.is_main:  # no smoke test under torchrun: every rank ends with code OK here
        return code
    summary = {"output_dir": str(outcome.out_dir), "finished": outcome.finished, "steps": outcome.steps_done,
               "smoke_test": outcome.smoke_test, "exit_code": int(code)}
    reasons = f"the reasons are in {out_dir / 'report.md'}"
    if outcome.finished and push_target and (code == ExitCode.OK or force):
        from seamharden.hub.publish import publish

        summary["pushed"] = publish(out_dir, push_to, private=private, revision=revision,
                                    commit_message=commit_message, force=force, **push_target)
    if as_json:
        click.echo(json.dumps(summary))
    elif not outcome.finished:
        again = shlex.join(["seamharden", "protect", model, str(out_dir), *overrides, "--recipe", recipe_name,
                            "--resume"])
        click.echo(f"stopped after step {outcome.steps_done}; continue with: {again}")
    else:
        click.echo(f"hardened model written to {out_dir} (smoke test: {verdict or 'not run'})")
        est = (outcome.hardening or {}).get("estimator") or {}
        if est.get("failed_steps"):
            click.echo(f"warning: the L_sd estimate failed its self-check on {est['failed_steps']} of "
                       f"{est['checked_steps']} steps (report.md, Hardening)")
        if "pushed" in summary:
            click.echo(f"published: {summary['pushed']}")
    if code != ExitCode.OK:
        skipped = f"; not published to {push_to} (pass --force to publish anyway)" if push_target and not force else ""
        click.echo(f"error: smoke test {verdict}: the hardened model stays in {out_dir}; {reasons}{skipped}",
                   err=True)
    return code


commands = [protect_command]
