"""Publish a hardened-model output directory to the Hub as one commit.

What is uploaded is exactly the files listed in ``seamharden.json`` plus the manifest itself,
after checking they still match their hashes. A directory whose smoke test did not pass is
refused unless ``force``; a forced publish says so in the model card and the manifest.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard

from seamharden import __version__
from seamharden.errors import ExitCode, UserError
from seamharden.hub.errors import hub_errors, one_line
from seamharden.manifest import MANIFEST, normalize_smoke_test, read_manifest, save_manifest, sha256_file, verify_files

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


def mark_forced(folder: Path, manifest: dict, reason: str) -> dict:
    """Rewrite the card and the manifest (``smoke_test.forced``, card hash) before a forced upload."""
    card_path = folder / CARD
    card_path.write_text(forced_card(card_path.read_text(encoding="utf-8"), reason), encoding="utf-8")
    manifest = dict(manifest)
    manifest["files"] = {**manifest["files"], CARD: sha256_file(card_path)}
    manifest["smoke_test"] = {**normalize_smoke_test(manifest.get("smoke_test")), "forced": True}
    return save_manifest(folder, manifest)


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
    if reason:
        manifest = mark_forced(folder, manifest, reason)

    endpoint = api.endpoint
    with hub_errors(f"creating {repo_id}", endpoint):
        # Asking first skips create_repo's 403 fallback, which cannot parse a non-default endpoint's URL.
        if not api.repo_exists(repo_id, repo_type="model"):
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision and revision != "main":
        with hub_errors(f"creating branch {revision} of {repo_id}", endpoint):
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")

    operations = [
        CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel))
        for rel in [*sorted(manifest["files"]), MANIFEST]
    ]
    smoke = normalize_smoke_test(manifest.get("smoke_test"))
    base = manifest.get("base_model") or "model"
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
