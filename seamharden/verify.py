"""Verify a hardened model: check its files against its manifest, re-run the attack suite, compare.

``verify`` is what ``seamharden verify`` does, minus option parsing and printing. The target is an
output directory of ``protect`` or a Hub id (downloaded with ``fetch_and_verify``); ``endpoint`` and
``token`` are passed in by the caller (the CLI resolves them with ``seamharden.hub.resolve``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from seamharden.errors import UserError
from seamharden.manifest import MANIFEST, read_manifest, verify_files
from seamharden.recipe.loading import list_recipes, load_recipe, recipe_hash

if TYPE_CHECKING:
    from seamharden.attack.results import SuiteResult
    from seamharden.attack.verdict import Verdict
    from seamharden.recipe.schema import Recipe
    from seamharden.report.json_io import ReportDocument

REPORT_PLACES = ("report.json", "report/report.json")
"""Where a report may sit in the target, relative to it; the first found is the recorded one."""

Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class VerifyOutcome:
    """The re-run's verdict beside what the target recorded.

    ``status``/``reasons``/``figures`` are the new verdict's (``figures`` as a plain dict);
    ``recorded_status`` is the verdict in the target's report.json (None without one);
    ``notes`` say where the re-run differs from the record (recipe hash, verdict);
    ``files_checked`` counts the manifest's files found unchanged (0 without a manifest, then
    ``manifest`` is None);
    ``recipe_source`` is the --recipe argument, ``recipe.yaml`` or the report's packaged recipe name.
    """

    target: str
    folder: Path
    fetched: bool
    base_model: str
    recipe_source: str
    status: str
    reasons: list[str]
    figures: dict
    notes: list[str]
    files_checked: int
    recorded_status: str | None
    manifest: dict | None
    result: SuiteResult
    verdict: Verdict


def local_folder(target: str, *, endpoint: str | None, token: str | None,
                 revision: str | None) -> tuple[Path, bool]:
    """(directory, fetched from the Hub); a Hub id is downloaded and checked against its manifest."""
    from seamharden.modeling import looks_like_path

    path = Path(target).expanduser()
    if path.is_dir():
        return path, False
    if looks_like_path(target):
        raise UserError(f"{target}: no such directory")
    from seamharden.hub.fetch import fetch_and_verify
    from seamharden.hub.resolve import resolve_endpoint

    return fetch_and_verify(target, endpoint=resolve_endpoint(endpoint), token=token, revision=revision), True


def read_recorded_report(folder: Path) -> ReportDocument | None:
    """The report in ``folder`` (first of ``REPORT_PLACES``), None when there is none; invalid: UserError."""
    from seamharden.report.json_io import load_report

    for rel in REPORT_PLACES:
        if (folder / rel).is_file():
            try:
                return load_report(folder / rel)
            except (ValidationError, ValueError, OSError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise UserError(f"{folder / rel} is not a valid seamharden report: {first}") from None
    return None


def verify_recipe(folder: Path, recipe: str | None, overrides: Sequence[str],
                  report: ReportDocument | None) -> tuple[Recipe, str]:
    """(recipe to re-run, where it came from): ``recipe``, else the folder's recipe.yaml, else the report's."""
    if recipe is not None:
        return load_recipe(recipe, overrides), recipe
    if (folder / "recipe.yaml").is_file():
        return load_recipe(str(folder / "recipe.yaml"), overrides), "recipe.yaml"
    if report is not None and report.recipe_name in list_recipes():
        return load_recipe(report.recipe_name, overrides), report.recipe_name
    raise UserError(f"{folder} has no recipe.yaml and its report names no packaged recipe; pass --recipe")


def verify(
    target: str,
    *,
    recipe: str | None = None,
    overrides: Sequence[str] = (),
    base: str | None = None,
    endpoint: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    progress: Progress | None = None,
) -> VerifyOutcome:
    """Check ``target``'s files, re-run the attack suite on base and target, and compare with the record.

    ``recipe``: a packaged name or YAML path (default: see ``verify_recipe``), with ``overrides``
    (``KEY=VALUE``). ``base``: default the manifest's ``base_model``. ``endpoint``/``revision``/
    ``token`` are used only when ``target`` is a Hub id (``endpoint`` None: huggingface_hub's
    configured one; ``token`` None: anonymous). ``progress(description, done, total)`` as in
    ``run_suite``. A missing or changed file, a missing base or recipe, or an invalid report
    raises UserError before any model loads.
    """
    from seamharden.attack.suite import run_suite

    folder, fetched = local_folder(target, endpoint=endpoint, token=token, revision=revision)
    manifest = None
    if (folder / MANIFEST).is_file():
        manifest = read_manifest(folder)
        problems = verify_files(folder, manifest)
        if problems:
            raise UserError(f"{target} does not match its {MANIFEST}: {'; '.join(problems)}")
    base = base or (manifest or {}).get("base_model")
    if not base:
        raise UserError(f"{target} has no {MANIFEST} naming its base model; pass --base")
    report = read_recorded_report(folder)
    resolved, recipe_source = verify_recipe(folder, recipe, overrides, report)
    notes = []
    if manifest is not None and manifest.get("recipe_hash") and manifest["recipe_hash"] != recipe_hash(resolved):
        notes.append("the recipe differs from the one recorded in the manifest (recipe_hash)")
    result, v = run_suite(base, str(folder), resolved, progress=progress)
    recorded = report.verdict.status if report is not None else None
    if recorded is not None and recorded != v.status:
        notes.append(f"the recorded verdict was {recorded}, the re-run gives {v.status}")
    return VerifyOutcome(
        target=target, folder=folder, fetched=fetched, base_model=base, recipe_source=recipe_source,
        status=v.status, reasons=list(v.reasons), figures=v.figures.model_dump(), notes=notes,
        files_checked=len(manifest["files"]) if manifest is not None else 0, recorded_status=recorded,
        manifest=manifest, result=result, verdict=v,
    )
