"""``seamharden attack`` and ``seamharden verify``: run the attack suite, print the verdict.

Both parse options, draw progress and print; the work is ``seamharden.attack.suite.run_suite``
(``run_attacks`` without ``--base``) and ``seamharden.verify.verify``.

Exit codes of both: 0 pass, 3 the hardened model does not resist (or lost utility), 4 inconclusive,
2 usage / configuration / integrity errors. ``attack MODEL`` without ``--base`` only measures
MODEL (no verdict is possible without a base to compare with) and exits 0.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seamharden.errors import ExitCode

if TYPE_CHECKING:
    from seamharden.attack.results import SuiteResult
    from seamharden.attack.verdict import Verdict
    from seamharden.recipe.schema import Recipe

EXIT_CODES = {"pass": ExitCode.OK, "fail": ExitCode.ROBUSTNESS_FAILED, "inconclusive": ExitCode.INCONCLUSIVE}


@contextmanager
def _progress(enabled: bool) -> Iterator:
    """A transient rich progress bar on stderr, as a ``run_suite`` progress callback (None if disabled)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("loading", total=None)
        yield lambda description, done, total: bar.update(task, description=description, completed=done,
                                                          total=total)


def _interactive() -> bool:
    return sys.stderr.isatty()


def _run_table(result: SuiteResult) -> list[str]:
    """One line per attack run: harmful and benign loss at step 0, at the best-harm point, at the end."""
    lines = []
    for run in result.runs:
        best = run.points[run.best_harmful_index]
        lines.append(f"  {run.model:<8} {run.label:<44} harmful {run.start.harmful_loss:.3g} -> best "
                     f"{best.harmful_loss:.3g} (step {best.step}); benign {run.start.benign_loss:.3g} -> "
                     f"{run.final.benign_loss:.3g}")
    return lines


def _emit(payload: dict, lines: list[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2, allow_nan=False, default=str))
    else:
        click.echo("\n".join(lines))


def _finite(obj):
    """JSON-safe copy: non-finite floats become the strings report.json uses (``"NaN"``, ``"Infinity"``)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _verdict_payload(v: Verdict) -> dict:
    return {"status": v.status, "reasons": v.reasons, "figures": v.figures.model_dump()}


def _verdict_lines(v: Verdict, headline: str) -> list[str]:
    return [headline, *(f"  - {r}" for r in v.reasons)]


def _write(result: SuiteResult, v: Verdict, out: Path | None, *, title: str, base: str, recipe: Recipe) -> list[str]:
    if out is None:
        return []
    from seamharden.report import write_report

    paths = write_report(result, v, out, title=title, base_model=base, recipe_name=recipe.name)
    return [str(p) for p in paths]


@click.command("attack")
@click.argument("model")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--base", default=None, metavar="BASE", help="Base model to attack side by side; gives a verdict.")
@click.option("--recipe", "recipe_name", default="default", show_default=True, metavar="NAME|PATH",
              help="Packaged recipe name or YAML file; its attack section is the suite.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write report.json, report.md, README.md and plots/ here.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def attack(model: str, overrides: tuple[str, ...], base: str | None, recipe_name: str, out: Path | None,
           as_json: bool) -> int:
    """Run the recipe's harmful fine-tuning attacks on MODEL (and on BASE with --base).

    With --base: the same attacks on both, the verdict, exit 0 pass / 3 fail / 4 inconclusive.
    Without: MODEL alone is measured (recorded as the base side, its own yardstick); the
    metrics are printed and written, no verdict is decided, exit 0.
    """
    from seamharden.recipe.loading import load_recipe
    from seamharden.references import check_model_available

    recipe = load_recipe(recipe_name, overrides)
    for ref in (model, base):
        if ref is not None:
            check_model_available(ref, recipe.model.revision)
    from seamharden.attack.suite import run_attacks, run_suite  # torch: once the models can be had
    from seamharden.attack.verdict import verdict
    with _progress(_interactive() and not as_json) as progress:
        if base is None:
            result = run_attacks(model, recipe, kind="base", progress=progress)
            v = verdict(result, recipe.attack.criteria)
        else:
            result, v = run_suite(base, model, recipe, progress=progress)
    files = _write(result, v, out, title=f"seamharden attack: {model}", base=base or model, recipe=recipe)
    status = v.status if base is not None else None
    payload = {"status": status, "model": model, "base_model": base, "recipe": recipe.name,
               "runs": [r.model_dump() for r in result.runs], "files": files}
    if base is not None:
        payload |= _verdict_payload(v)
    headline = f"verdict: {v.status.upper()}" if base is not None else f"attacks on {model} (no base: no verdict)"
    lines = (_verdict_lines(v, headline) if base is not None else [headline]) + _run_table(result)
    lines += [f"wrote {f}" for f in files[:1]] + ([f"  and {len(files) - 1} more files"] if len(files) > 1 else [])
    _emit(_finite(payload), lines, as_json)
    return int(EXIT_CODES[v.status]) if base is not None else int(ExitCode.OK)


def _verify_error(target: str | None, message: str, exit_code: int) -> None:
    """Print ``verify --json``'s document for an outcome without a verdict (stdout)."""
    from seamharden.verify import VerifyJson

    doc = VerifyJson(status="error", exit_code=exit_code, error=message, model=target)
    click.echo(doc.model_dump_json(indent=2))


class _VerifyCommand(click.Command):
    """``verify``: with ``--json``, a usage error (unknown option, missing argument) prints the JSON too."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        json_asked = "--json" in args
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            if json_asked:
                _verify_error(None, err.format_message(), ExitCode.USAGE)
            raise


@contextmanager
def _json_on_error(target: str, as_json: bool) -> Iterator[None]:
    """With ``--json``, every way out without a verdict prints the JSON document first; the error is re-raised
    (one line on stderr, or the traceback of an internal error)."""
    from seamharden.errors import UserError

    try:
        yield
    except UserError as err:
        if as_json:
            _verify_error(target, str(err), err.exit_code)
        raise
    except (KeyboardInterrupt, click.exceptions.Abort):
        if as_json:
            _verify_error(target, "aborted", ExitCode.INTERRUPTED)
        raise
    except Exception as err:
        if as_json:
            _verify_error(target, f"internal error: {type(err).__name__}: {err}", ExitCode.INTERNAL)
        raise


@click.command("verify", cls=_VerifyCommand)
@click.argument("target", metavar="MODEL_OR_DIR")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--recipe", "recipe_name", default=None, metavar="NAME|PATH",
              help="Recipe to re-run [default: the directory's recipe.yaml, else the report's recipe].")
@click.option("--base", default=None, metavar="BASE",
              help="Base model [default: base_model of seamharden.json]; required without a manifest.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document on stdout for every outcome, errors included (docs/ci.md).")
@click.option("--endpoint", default=None, metavar="URL", help="Hub URL [default: HF_ENDPOINT or huggingface.co].")
@click.option("--revision", default=None, help="Hub revision of MODEL_OR_DIR when it is a Hub id.")
def verify(target: str, overrides: tuple[str, ...], recipe_name: str | None, base: str | None, as_json: bool,
           endpoint: str | None, revision: str | None) -> int:
    """Re-run the attack suite on a hardened model and check its files; exit 0 / 3 / 4 like the verdict.

    MODEL_OR_DIR: an output directory of `seamharden protect`, or a Hub id published with
    `seamharden push` (downloaded, then every file is checked against seamharden.json). A
    model directory without seamharden.json needs --base (and --recipe without a recipe.yaml).
    Any missing or changed file: exit 2. With --json, stdout holds one JSON document whatever
    the outcome (schema: seamharden.verify.VerifyJson, docs/ci.md).
    """
    with _json_on_error(target, as_json):
        from seamharden.hub.resolve import resolve_endpoint, resolve_token
        from seamharden.manifest import MANIFEST
        from seamharden.verify import VerifyJson
        from seamharden.verify import verify as verify_target

        with _progress(_interactive() and not as_json) as progress:
            outcome = verify_target(target, recipe=recipe_name, overrides=overrides, base=base,
                                    endpoint=resolve_endpoint(endpoint), revision=revision, token=resolve_token(),
                                    progress=progress)
        code = int(EXIT_CODES[outcome.status])
        doc = VerifyJson(status=outcome.status, exit_code=code, reasons=outcome.reasons, unmet=outcome.verdict.unmet,
                         figures=_finite(outcome.figures), model=target, folder=str(outcome.folder),
                         base_model=outcome.base_model, recipe=outcome.recipe_source,
                         files_checked=outcome.files_checked, recorded_status=outcome.recorded_status,
                         notes=outcome.notes)
    headline = (f"verdict: {outcome.status.upper()} (recorded: {outcome.recorded_status or 'none'}; "
                f"{outcome.files_checked} files match {MANIFEST if outcome.manifest else '(no manifest)'})")
    lines = (_verdict_lines(outcome.verdict, headline) + [f"  note: {n}" for n in outcome.notes]
             + _run_table(outcome.result))
    if as_json:
        click.echo(doc.model_dump_json(indent=2))
    else:
        click.echo("\n".join(lines))
    return code


commands = [attack, verify]
