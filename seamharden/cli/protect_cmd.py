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
    from rich.progress import Progress


def _progress(console: Console) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]hardening"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=False,
    )


def _stats_line(r: dict) -> str:
    return (f"ul {r['loss_ul']:.3f} up {r['loss_up']:.3f} sd {r['loss_sd']:+.3f} "
            f"cos {r['cosine']:+.3f} {r['tokens_per_s']:.0f} tok/s")


def _print_plan(console: Console, recipe, plan: dict) -> None:
    from seamharden.recipe.loading import dump_recipe_yaml
    from seamharden.recipe.memory import GIB

    console.print(dump_recipe_yaml(recipe), markup=False, highlight=False)
    console.print(f"# model {plan['model']}: {plan['parameters']:,} parameters, "
                  f"{plan['trainable_parameters']:,} trainable; recipe hash {plan['recipe_hash'][:12]}")
    memory = plan["memory_bytes"]
    console.print("# memory estimate (GiB): " + ", ".join(
        f"{k} {v / GIB:.2f}" for k, v in memory.items() if k not in ("pageable", "disk_kept_copies")))
    if memory.get("disk_kept_copies"):
        disk = memory["disk_kept_copies"] / GIB
        console.print(f"# disk for the utility controller's kept weights: up to {disk:.2f} GiB")


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
    """SIGINT while training: finish the step, checkpoint, exit 130 (a second Ctrl-C stops at once).
    In any other stage Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.training = False

    def handler(self, signum, frame) -> None:
        if self.requested or not self.training:
            raise KeyboardInterrupt
        self.requested = True

    def should_stop(self) -> bool:
        return self.requested

    def on_stage(self, name: str) -> None:
        self.training = name == "training"


@contextmanager
def _graceful_interrupt():
    interrupts = _Interrupts()
    previous = signal.signal(signal.SIGINT, interrupts.handler)
    try:
        yield interrupts
    finally:
        signal.signal(signal.SIGINT, previous)


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
    """
    from rich.console import Console

    from seamharden.core.estimator import CONSISTENCY_THRESHOLD, consistency_passes
    from seamharden.modeling import check_model_reference
    from seamharden.protect import default_output_dir, dry_run_plan, load_base_results, protect, run_smoke_test
    from seamharden.recipe.loading import load_recipe

    if output_dir is not None and "=" in str(output_dir):
        overrides, output_dir = (str(output_dir), *overrides), None
    recipe = load_recipe(recipe_name, overrides)
    check_model_reference(model)
    push_target = _check_push_target(push_to, endpoint) if push_to else None
    smoke_test = None if no_smoke_test else run_smoke_test
    if base_results and smoke_test:
        smoke_test = functools.partial(run_smoke_test, base_results=load_base_results(base_results, recipe))
    out_dir = output_dir or default_output_dir(model)
    console = Console(stderr=True)
    if dry_run:
        _print_plan(Console(), recipe, dry_run_plan(model, recipe))
        return ExitCode.OK

    seam, utility = recipe.seam, recipe.utility
    estimator = seam.difference if seam.difference == "hvp" else (
        f"{seam.difference} differences, {seam.step_policy} step, self-check {'on' if seam.self_check else 'off'}")
    budget = (f", anchor {utility.anchor:g}" if utility.anchor else "") + (
        f", utility controller every {utility.check_every} steps" if utility.controller else "")
    console.print(f"hardening {model} -> {out_dir} with recipe {recipe.name} "
                  f"({recipe.train.steps} steps, beta {seam.beta}, {recipe.train.optimizer}, L_sd estimator "
                  f"{estimator}{budget})")
    warned: list[int] = []
    with _progress(console) as progress, _graceful_interrupt() as interrupts:
        task = progress.add_task("harden", total=recipe.train.steps, stats="loading")

        def on_step(record: dict) -> None:
            progress.update(task, completed=record["step"], stats=_stats_line(record))
            value = float(record.get("estimate_consistency", float("nan")))
            if not warned and consistency_passes(value) is False:
                warned.append(record["step"])
                progress.console.print(
                    f"warning: the L_sd estimate failed its self-check at step {record['step']} (consistency "
                    f"{value:.3g} > {CONSISTENCY_THRESHOLD:g}); try seam.difference=hvp or a smaller "
                    "seam.relative_step (docs/method.md); the report counts every such step")

        def on_stage(name: str) -> None:
            interrupts.on_stage(name)
            if name != "training":
                progress.update(task, stats=name)

        outcome = protect(model, out_dir, recipe, resume=resume, stop_after=stop_after,
                          smoke_test=smoke_test, on_step=on_step,
                          should_stop=interrupts.should_stop, on_stage=on_stage)
    summary = {"output_dir": str(outcome.out_dir), "finished": outcome.finished, "steps": outcome.steps_done,
               "smoke_test": outcome.smoke_test}
    if outcome.finished and push_target:
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
        verdict = (outcome.smoke_test or {}).get("verdict") or "not run"
        click.echo(f"hardened model written to {out_dir} (smoke test: {verdict})")
        est = (outcome.hardening or {}).get("estimator") or {}
        if est.get("failed_steps"):
            click.echo(f"warning: the L_sd estimate failed its self-check on {est['failed_steps']} of "
                       f"{est['checked_steps']} steps (report.md, Hardening)")
        if "pushed" in summary:
            click.echo(f"published: {summary['pushed']}")
    return ExitCode.OK


commands = [protect_command]
