"""Publish a hardened-model output directory to the Hub as one commit.

What is uploaded is exactly the files listed in ``seamharden.json`` plus the manifest itself,
after checking they still match their hashes. A directory whose smoke test did not pass is
refused unless ``force``; a forced publish says so in the model card and the manifest *of the
commit*. Local paths (a local base, the output directory) are published as "a local model
(config sha256 ...)" and the repo id. Both rewrite the commit's contents in memory
(``published_contents``); the local directory is never changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import yaml
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard

from seamharden import __version__
from seamharden.errors import ExitCode, UserError
from seamharden.hub.errors import hub_errors, one_line
from seamharden.manifest import MANIFEST, normalize_smoke_test, read_manifest, verify_files

CARD = "README.md"
FORCED_MARKER = "<!-- seamharden:forced-publish -->"
FORCED_TAG = "seamharden-unverified"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
"""A Hub model repo id, ``ORG/NAME``."""


def smoke_test_problem(manifest: dict) -> str | None:
    """Why the manifest's smoke test does not allow publishing, or None when it passed."""
    try:
        smoke = normalize_smoke_test(manifest.get("smoke_test"))
    except ValueError as err:
        raise UserError(f"{MANIFEST} has an invalid smoke_test entry: {err}") from err
    if not smoke["ran"]:
        return "the smoke test did not run"
    if smoke["verdict"] == "pass":
        return None
    if smoke["verdict"] == "fail":
        return "the smoke test failed"
    return "the smoke test was inconclusive"


def forced_card(text: str, reason: str) -> str:
    """``text`` (a model card) with a tag and a warning section saying it was force-published."""
    if FORCED_MARKER in text:
        return text
    section = (
        f"\n\n{FORCED_MARKER}\n"
        "## Warning: published without a passing smoke test\n\n"
        f"This model was published with `seamharden push --force` although {reason}. "
        "Its robustness claims were not confirmed by the post-hardening smoke test; treat them as unverified.\n"
    )
    try:
        card = ModelCard(text, ignore_metadata_errors=True)
    except (ValueError, yaml.YAMLError):
        return text.rstrip() + section
    tags = list(card.data.tags or [])
    if FORCED_TAG not in tags:
        card.data.tags = [*tags, FORCED_TAG]
    card.text = card.text.rstrip() + section
    return str(card)


TEXT_SUFFIXES = (".md", ".json", ".jsonl", ".yaml", ".yml", ".txt", ".jinja")
"""Published files that may name a model reference; they are read and rewritten in memory."""
_TEXT_LIMIT = 64 << 20


EVAL_PATH_NAMES = {"judge_model": "a local judge model", "benchmark_include": "a local lm-eval task directory"}
"""Evaluation settings (report.json ``results.extra.eval_settings``) that may name a local path, and what
is published instead."""


def _is_local_path(ref: str | None) -> bool:
    """A reference that is a filesystem path (not a Hub id, not a bare directory name)."""
    return bool(ref) and (ref.startswith(("/", ".", "~")) or "\\" in ref or ref.count("/") > 1)


def local_references(folder: Path, manifest: dict, repo_id: str) -> dict[str, str]:
    """``{local path as written: what to publish instead}``, longest first.

    The base, when it was a local directory: ``public_model_reference`` ("a local model (config sha256
    ...)"), under its recorded and its absolute spelling; the output directory (``results.hardened_model``
    of report.json, and its absolute path): ``repo_id``; a local judge model or lm-eval task directory of the
    attack suite (``EVAL_PATH_NAMES``): a phrase naming what it was.
    """
    from seamharden.references import public_model_reference, resolve_model_reference

    out: dict[str, str] = {}
    base = manifest.get("base_model")
    if _is_local_path(base):
        public = public_model_reference(resolve_model_reference(base))
        out |= {base: public, resolve_model_reference(base): public}
    hardened = [str(folder.resolve())]
    report = folder / "report.json"
    settings: dict = {}
    if report.is_file():
        try:
            results = json.loads(report.read_text(encoding="utf-8"))["results"]
            hardened.append(results["hardened_model"])
            settings = results.get("extra", {}).get("eval_settings") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    out |= {ref: repo_id for ref in hardened if _is_local_path(ref) and ref not in out}
    for key, public in EVAL_PATH_NAMES.items():  # a local judge model or task directory of the suite
        ref = settings.get(key) if isinstance(settings, dict) else None
        if isinstance(ref, str) and _is_local_path(ref) and ref not in out:
            out[ref] = public
    return dict(sorted(out.items(), key=lambda kv: -len(kv[0])))


def without_local_paths(text: str, references: dict[str, str]) -> str:
    """``text`` with every whole occurrence of each reference (not part of a longer path) replaced."""
    for ref, public in references.items():
        for spelling in (ref, json.dumps(ref)[1:-1]):
            pattern = rf"(?<![\w./~-]){re.escape(spelling)}(?![\w.-]|/[\w.])"
            text = re.sub(pattern, lambda _, public=public: public, text)
    return text


def _card_without_local_base(text: str, public_base: str | None) -> str:
    """The card without a ``base_model`` metadata entry that is not a Hub id (the Hub expects model ids there)."""
    if public_base is None or not text.startswith("---"):
        return text
    try:
        card = ModelCard(text, ignore_metadata_errors=True)
    except (ValueError, yaml.YAMLError):
        return text
    if card.data.base_model == public_base:
        card.data.base_model = None
        return str(card)
    return text


def published_contents(folder: Path, manifest: dict, repo_id: str, forced_reason: str | None) -> dict[str, bytes]:
    """What the commit holds instead of the local bytes: ``{relpath: bytes}`` for every file that changes,
    the manifest included. Nothing is written to ``folder``.

    Local paths (a local base, the output directory) are replaced (``local_references``); a forced
    publish adds its warning to the card and ``"forced": true`` to the manifest's smoke test. The
    published manifest lists the published files' hashes, and its ``recipe_hash`` is the published
    recipe.yaml's, so the published set verifies on its own.
    """
    from seamharden.references import is_public_local_name

    references = local_references(folder, manifest, repo_id)
    public_base = next((v for v in references.values() if is_public_local_name(v)), None)
    changed: dict[str, bytes] = {}
    for rel in sorted(manifest["files"]):
        path = folder / rel
        if not rel.endswith(TEXT_SUFFIXES) or path.stat().st_size > _TEXT_LIMIT:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = without_local_paths(text, references)
        if rel == CARD:
            new = _card_without_local_base(new, public_base)
            if forced_reason:
                new = forced_card(new, forced_reason)
        leaked = [ref for ref in references if ref.startswith("/") and ref in new]
        if leaked:
            raise UserError(f"refusing to publish: {rel} would still name a local path; re-run `seamharden protect`")
        if new != text:
            changed[rel] = new.encode("utf-8")
    published = dict(manifest)
    published["files"] = {**manifest["files"],
                          **{rel: hashlib.sha256(data).hexdigest() for rel, data in changed.items()}}
    if public_base is not None:
        published["base_model"] = public_base
    if "recipe.yaml" in changed:
        published["recipe_hash"] = _recipe_hash_of(changed["recipe.yaml"], manifest.get("recipe_hash"))
    if forced_reason:
        published["smoke_test"] = {**normalize_smoke_test(manifest.get("smoke_test")), "forced": True}
    if published != manifest:
        changed[MANIFEST] = (json.dumps(published, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return changed


def _recipe_hash_of(data: bytes, fallback: str | None) -> str | None:
    from pydantic import ValidationError

    from seamharden.recipe.loading import recipe_hash
    from seamharden.recipe.schema import Recipe

    try:
        return recipe_hash(Recipe.model_validate(yaml.safe_load(data)))
    except (ValidationError, yaml.YAMLError):
        return fallback


def check_folder(folder: Path) -> dict:
    """The folder's manifest, after checking every listed file and the model card are there unchanged."""
    manifest = read_manifest(folder)
    problems = verify_files(folder, manifest)
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise UserError(f"{folder} does not match its {MANIFEST} ({shown}); re-run `seamharden protect`")
    if CARD not in manifest["files"]:
        raise UserError(f"{folder} has no model card ({CARD}); re-run `seamharden protect`")
    return manifest


def push_folder(
    api: HfApi,
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    force: bool = False,
) -> str:
    """Upload ``folder`` to the model repo ``repo_id`` in one commit; returns the commit URL.

    Raises UserError (exit code 2) when the smoke test did not pass and ``force`` is off, when the
    folder no longer matches its manifest, and for every Hub or network failure.
    """
    folder = Path(folder)
    manifest = check_folder(folder)
    reason = smoke_test_problem(manifest)
    if reason and not force:
        raise UserError(
            f"refusing to publish {folder}: {reason}; pass --force to publish anyway (the model card will say so)",
            ExitCode.USAGE,
        )
    contents = published_contents(folder, manifest, repo_id, reason)

    endpoint = api.endpoint
    with hub_errors(f"creating {repo_id}", endpoint):
        # Asking first skips create_repo's 403 fallback, which cannot parse a non-default endpoint's URL.
        if not api.repo_exists(repo_id, repo_type="model"):
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision and revision != "main":
        with hub_errors(f"creating branch {revision} of {repo_id}", endpoint):
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")

    operations = [
        CommitOperationAdd(path_in_repo=rel, path_or_fileobj=contents.get(rel, str(folder / rel)))
        for rel in [*sorted(manifest["files"]), MANIFEST]
    ]
    published = json.loads(contents[MANIFEST]) if MANIFEST in contents else manifest
    smoke = normalize_smoke_test(published.get("smoke_test"))
    base = published.get("base_model") or "model"
    message = commit_message or f"Publish SEAM-hardened {base} (seamharden {__version__})"
    forced = " (published with --force)" if smoke["forced"] else ""
    description = f"Smoke test: {smoke['verdict'] or 'not run'}{forced}."
    unconfirmed = "; the Hub did not confirm the commit, treat nothing as published"
    with hub_errors(f"uploading {folder} to {repo_id}", endpoint, unconfirmed):
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=one_line(message, 200),
            commit_description=description,
            revision=revision,
            repo_type="model",
        )
    return info.commit_url


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    force: bool = False,
    endpoint: str,
    token: str | None,
) -> str:
    """Push ``folder`` to ``repo_id`` on ``endpoint`` with ``token`` (what ``seamharden push`` does).

    Returns the commit URL. A malformed ``repo_id`` or a missing token is a UserError before
    any request; everything else as in ``push_folder``.
    """
    if not REPO_ID.match(repo_id):
        raise UserError(f"invalid repo id {repo_id!r}: expected ORG/NAME")
    if not token:
        raise UserError("no Hugging Face token found: set HF_TOKEN or run `hf auth login`")
    api = HfApi(endpoint=endpoint, token=token)
    return push_folder(
        api, folder, repo_id, private=private, revision=revision, commit_message=commit_message, force=force,
    )
