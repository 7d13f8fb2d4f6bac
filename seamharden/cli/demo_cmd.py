"""``seamharden demo``: protect -> attack -> compare, on a built-in toy world, on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from seamharden.errors import ExitCode


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help='Print {"base": {...}, "hardened": {...}} as JSON.')
@click.option("--seed", default=0, show_default=True, help="Seed of the toy world, pretraining and attacks.")
@click.option("--quick", is_flag=True,
              help="A reduced run: fewer evaluation prompts, same pretraining, hardening and attacks.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path("~/.cache/seamharden/demo"),
              show_default=True, envvar="SEAMHARDEN_CACHE", help="Where the pretrained toy base model is cached.")
def demo_command(as_json: bool, seed: int, quick: bool, cache_dir: Path) -> int:
    """Show SEAM's self-destruction end to end on a tiny toy model, measured, in minutes on a CPU.

    Exits 0 when the run shows the effect (criteria in docs/demo.md), 3 when it does not.
    """
    from seamharden.demo.run import check_criteria, format_result, run_demo

    console = Console(stderr=True)
    result = run_demo(cache_dir.expanduser(), seed=seed, quick=quick,
                      log=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    failures = check_criteria(result)
    if as_json:
        click.echo(json.dumps({"base": result["base"], "hardened": result["hardened"]}))
    else:
        click.echo(format_result(result))
        for failure in failures:
            click.echo(f"not shown: {failure}")
    return ExitCode.ROBUSTNESS_FAILED if failures else ExitCode.OK


commands = [demo_command]
