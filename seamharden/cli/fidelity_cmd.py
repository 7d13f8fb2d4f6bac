"""``seamharden fidelity``: how close the Hessian-free estimate of grad sim is to an exact reference.

Exit codes: 0 when the cosine reaches ``--min-cosine``; 3 (``ROBUSTNESS_FAILED``, a
failed quality gate) when it does not; 2 for a user error (missing model directory...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seamharden.errors import ExitCode, UserError

if TYPE_CHECKING:
    from seamharden.fidelity import FidelityReport

DTYPE_NAMES = {"bf16": "bfloat16", "fp32": "float32"}
EXACT_MAX_PARAMS_SHOWN = 50_000_000
"""``seamharden.fidelity.EXACT_MAX_PARAMS`` for --help, which must not import torch (a test keeps them equal)."""


def _exact_max_params() -> int:
    from seamharden.fidelity import EXACT_MAX_PARAMS

    return EXACT_MAX_PARAMS


def _table(report: FidelityReport, min_cosine: float, passed: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="SEAM estimator fidelity (grad of sim)", show_header=True)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    verdict = "[green]ok[/green]" if passed else "[red]below[/red]"
    rows = [
        ("cosine vs reference", f"{report.cosine:.6f}  ({verdict} min {min_cosine:g})"),
        ("relative error", f"{report.relative_error:.4g}"),
        ("step h", f"{report.step:.4g}"),
        ("applied-perturbation cosine", f"{report.applied_cosine:.4f}"),
        ("sim = cos(g_a, g_b)", f"{report.sim:.4f}"),
        ("policy", report.policy + (f" (rho {report.relative_step:g})" if report.relative_step is not None
                                    else f" (epsilon {report.epsilon:g})")),
        ("difference", report.difference),
        ("dtype", report.dtype),
        ("reference", report.reference),
        ("parameters", f"{report.parameters:,}"),
        ("seed", str(report.seed)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


@click.command("fidelity")
@click.argument("model_dir")
@click.option("--dtype", type=click.Choice(sorted(DTYPE_NAMES)), default="bf16", show_default=True,
              help="Weight dtype of the estimate.")
@click.option("--difference", type=click.Choice(["hvp", "central", "forward"]), default="hvp", show_default=True,
              help="hvp: exact Hessian-vector products; central/forward: finite differences.")
@click.option("--policy", type=click.Choice(["relative", "absolute"]), default="relative", show_default=True,
              help="Step policy: h = rho * ||theta|| (relative) or h = epsilon (absolute).")
@click.option("--epsilon", type=float, default=1e-3, show_default=True, help="h of the absolute policy.")
@click.option("--relative-step", type=float, default=None, help="rho of the relative policy [default: per dtype].")
@click.option("--min-cosine", type=float, default=0.9, show_default=True,
              help="Exit 3 when the cosine is below this.")
@click.option("--exact-max-params", type=int, default=_exact_max_params,
              help="Largest model for the fp64 double-backward reference; above: fp32 central differences."
                   f"  [default: {EXACT_MAX_PARAMS_SHOWN}]")
@click.option("--examples", type=click.IntRange(1, 64), default=4, show_default=True, help="Rows per batch.")
@click.option("--max-length", type=click.IntRange(8, 4096), default=48, show_default=True, help="Tokens per row.")
@click.option("--seed", type=int, default=0, show_default=True, help="Picks the rows and seeds the passes.")
@click.option("--save", "save_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write batches.safetensors, grads.safetensors and fidelity.json into DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def fidelity(model_dir: str, dtype: str, difference: str, policy: str, epsilon: float, relative_step: float | None,
             min_cosine: float, exact_max_params: int, examples: int, max_length: int, seed: int,
             save_dir: Path | None, as_json: bool) -> int:
    """Compare the estimator's grad of sim(g_a, g_b) on MODEL_DIR with an exact reference.

    MODEL_DIR is a Hugging Face model directory with its tokenizer. Exits 3 when the
    cosine is below --min-cosine.
    """
    from seamharden.core.estimator import StepPolicy
    from seamharden.fidelity import build_batches, measure_fidelity, save_fidelity
    from seamharden.modeling import check_model_reference, default_device, load_model
    from seamharden.recipe.schema import ModelSection

    path = Path(model_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"model {model_dir} is a file; pass a Hugging Face model directory")
    if not path.is_dir():
        raise UserError(f"model {model_dir}: no such directory")
    check_model_reference(model_dir)
    loaded = load_model(model_dir, ModelSection(dtype=DTYPE_NAMES[dtype]), default_device())
    batch_a, batch_b = build_batches(loaded.tokenizer, examples, max_length, seed)
    step_policy = StepPolicy(policy, difference, epsilon, relative_step)
    run = measure_fidelity(loaded.model, batch_a, batch_b, step_policy, seed, exact_max_params)
    report = run.report
    passed = report.cosine >= min_cosine
    if save_dir is not None:
        try:
            save_fidelity(run, save_dir)
        except OSError as err:
            raise UserError(f"cannot write {save_dir}: {err.strerror or err}") from None
    if as_json:
        click.echo(json.dumps({**report.as_dict(), "min_cosine": min_cosine, "passed": passed}))
    else:
        _table(report, min_cosine, passed)
    return ExitCode.OK if passed else ExitCode.ROBUSTNESS_FAILED


commands: list = [fidelity]
