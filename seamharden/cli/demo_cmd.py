"""``seamharden demo``: pretrain a toy base, then ``protect`` it with the ``toy`` recipe (attack suite included)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seamharden.errors import ExitCode

EXIT_CODES = {"pass": ExitCode.OK, "fail": ExitCode.ROBUSTNESS_FAILED, "inconclusive": ExitCode.INCONCLUSIVE}


@click.command("demo")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--json", "as_json", is_flag=True, help='Print {"base": {...}, "hardened": {...}} as JSON.')
@click.option("--seed", default=0, show_default=True, help="Seed of the toy world, pretraining, hardening and attacks.")
@click.option("--quick", is_flag=True,
              help="A reduced run: fewer evaluation prompts, same pretraining, hardening and attacks.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path("~/.cache/seamharden/demo"),
              show_default=True, envvar="SEAMHARDEN_CACHE", help="Where the pretrained toy base model is cached.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory of the protect run [default: a new folder under CACHE_DIR/runs].")
def demo_command(overrides: tuple[str, ...], as_json: bool, seed: int, quick: bool, cache_dir: Path,
                 out_dir: Path | None) -> int:
    """Show SEAM's self-destruction end to end on a tiny toy model, measured, in minutes on a CPU.

    Pretrains (once, cached) a toy base, writes the toy world's data, then runs `seamharden
    protect` with the packaged `toy` recipe: SEAM hardening, then the attack suite on base and
    hardened with the task verdict (docs/demo.md). KEY=VALUE overrides change the recipe, e.g.
    `seam.beta=0` (the ablation) or `utility.anchor=0`. The output directory holds the model,
    report.md and plots like any protect run. Exit 0 pass, 3 fail, 4 inconclusive.
    """
    from rich.console import Console

    from seamharden.demo.run import DemoPlan, format_result, run_demo

    console = Console(stderr=True)
    plan = DemoPlan.make(seed=seed, quick=quick, overrides=overrides)
    result = run_demo(cache_dir.expanduser(), plan, out_dir=out_dir,
                      log=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    status = result["verdict"]["status"]
    if as_json:
        click.echo(json.dumps({"base": result["base"], "hardened": result["hardened"]}))
    else:
        click.echo(format_result(result))
        click.echo(f"verdict: {status.upper()} (report: {Path(result['out_dir']) / 'report.md'})")
        if status != "pass":
            for reason in result["verdict"]["reasons"]:
                click.echo(f"  - {reason}")
    return int(EXIT_CODES[status])


commands = [demo_command]
