"""Verify a hardened model: check its files against its manifest, re-run the attack suite, compare.

``verify`` is what ``seamharden verify`` does, minus option parsing and printing. The target is an
output directory of ``protect`` or a Hub id (downloaded with ``fetch_and_verify``); ``endpoint`` and
``token`` are passed in by the caller (the CLI resolves them with ``seamharden.hub.resolve``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from seamharden.errors import UserError
from seamharden.manifest import MANIFEST, read_manifest, verify_files
from seamharden.recipe.loading import list_recipes, load_recipe, recipe_hash

if TYPE_CHECKING:
    from seamharden.attack.results import SuiteResult
    from seamharden.attack.verdict import Verdict
    from seamharden.recipe.schema import Recipe
    from seamharden.report.json_io import ReportDocument

VERIFY_JSON_SCHEMA_VERSION = 1
"""Version of ``VerifyJson``, what ``seamharden verify --json`` prints; raised on any incompatible change."""

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


class VerifyJson(BaseModel):
    """The document ``seamharden verify --json`` prints on stdout for every outcome (docs/ci.md).

    ``status`` is the verdict's, or ``error`` when no verdict was reached (then ``error`` holds the
    one-line message that also went to stderr, and ``exit_code`` is 1, 2 or 130). Figures that are
    not finite are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (as in report.json).
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = Field(VERIFY_JSON_SCHEMA_VERSION, description="this document's format version")
    status: Literal["pass", "fail", "inconclusive", "error"]
    exit_code: int = Field(..., description="the process's exit code: 0 pass, 3 fail, 4 inconclusive, 1/2/130 error")
    reasons: list[str] = Field(default_factory=list, description="the verdict's reason lines; empty on error")
    unmet: list[str] = Field(default_factory=list, description="the reasons whose check did not hold")
    figures: dict[str, float | int | str | None] | None = Field(
        None, description="the verdict's figures (report.json verdict.figures); null on error")
    error: str | None = Field(None, description="the error message when status is error, else null")
    model: str | None = Field(None, description="MODEL_OR_DIR as given")
    folder: str | None = Field(None, description="the directory checked (the Hub cache for a Hub id)")
    base_model: str | None = None
    recipe: str | None = Field(None, description="--recipe, recipe.yaml or the report's packaged recipe")
    files_checked: int = Field(0, description="files found unchanged against seamharden.json")
    recorded_status: Literal["pass", "fail", "inconclusive"] | None = Field(
        None, description="the verdict the target's report.json recorded")
    notes: list[str] = Field(default_factory=list, description="where the re-run differs from the record")


def local_folder(target: str, *, endpoint: str | None, token: str | None,
                 revision: str | None) -> tuple[Path, bool]:
    """(directory, fetched from the Hub); a Hub id is downloaded and checked against its manifest."""
    from seamharden.references import looks_like_path

    path = Path(target).expanduser()
    if path.is_dir():
        return path, False
    if path.exists():
        raise UserError(f"{target} is a file; pass an output directory of `seamharden protect` or a Hub id")
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


def _packaged_recipe_of(report: ReportDocument | None) -> str | None:
    return report.recipe_name if report is not None and report.recipe_name in list_recipes() else None


def verify_recipe(folder: Path, recipe: str | None, overrides: Sequence[str],
                  report: ReportDocument | None) -> tuple[Recipe, str]:
    """(recipe to re-run, where it came from): ``recipe``, else the folder's recipe.yaml, else the report's."""
    if recipe is not None:
        return load_recipe(recipe, overrides), recipe
    if (folder / "recipe.yaml").is_file():
        return load_recipe(str(folder / "recipe.yaml"), overrides), "recipe.yaml"
    if (packaged := _packaged_recipe_of(report)) is not None:
        return load_recipe(packaged, overrides), packaged
    raise UserError(f"{folder} has no recipe.yaml and its report names no packaged recipe; pass --recipe")


def check_not_an_output(target: str, folder: Path, *, base: str | None, recipe: str | None,
                        report: ReportDocument | None) -> None:
    """For a directory without a manifest: one error naming everything missing, before anything loads.

    Not a model directory at all (no config.json): no option would help, so none is suggested;
    a model directory: every option it still needs (``--base``, ``--recipe``) in one line.
    """
    if not (folder / "config.json").is_file():
        raise UserError(f"{target} is neither an output of `seamharden protect` (no {MANIFEST}) nor a model "
                        "directory (no config.json)")
    needed = [] if base else ["--base BASE"]
    if recipe is None and not (folder / "recipe.yaml").is_file() and _packaged_recipe_of(report) is None:
        needed.append("--recipe NAME|PATH")
    if needed:
        raise UserError(f"{target} has no {MANIFEST}, so it is not an output of `seamharden protect`; to attack it "
                        f"as a hardened model anyway, pass {' and '.join(needed)}")


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
    from seamharden.references import check_model_available

    folder, fetched = local_folder(target, endpoint=endpoint, token=token, revision=revision)
    manifest = None
    if (folder / MANIFEST).is_file():
        manifest = read_manifest(folder)
        problems = verify_files(folder, manifest)
        if problems:
            raise UserError(f"{target} does not match its {MANIFEST}: {'; '.join(problems)}")
    report = read_recorded_report(folder)
    if manifest is None:
        check_not_an_output(target, folder, base=base, recipe=recipe, report=report)
    base = base or manifest.get("base_model")
    if not base:
        raise UserError(f"the {MANIFEST} of {target} names no base model; pass --base")
    resolved, recipe_source = verify_recipe(folder, recipe, overrides, report)
    check_model_available(base, resolved.model.revision)
    notes = []
    if manifest is not None and manifest.get("recipe_hash") and manifest["recipe_hash"] != recipe_hash(resolved):
        notes.append("the recipe differs from the one recorded in the manifest (recipe_hash)")
    from seamharden.attack.suite import run_suite  # torch: only once everything above holds

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
