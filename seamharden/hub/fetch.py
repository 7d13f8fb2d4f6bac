"""Download a published model from the Hub and check it against its ``seamharden.json``."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import snapshot_download

from seamharden.errors import UserError
from seamharden.hub.errors import explain, hub_errors
from seamharden.manifest import MANIFEST, read_manifest, verify_files


def fetch_and_verify(
    repo_id: str,
    *,
    endpoint: str,
    token: str | None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Snapshot ``repo_id`` into the Hub cache and return its folder once every file matches the manifest.

    Files the manifest does not list (such as the Hub's own ``.gitattributes``) are ignored.
    A missing manifest or any missing or changed file raises UserError naming it.
    """
    where = f"{repo_id}@{revision}" if revision else repo_id
    with hub_errors(f"downloading {where}", endpoint):
        folder = Path(snapshot_download(
            repo_id,
            repo_type="model",
            revision=revision,
            endpoint=endpoint,
            token=token or False,
            cache_dir=cache_dir,
        ))
    if not (folder / MANIFEST).is_file():
        raise UserError(f"{where} has no {MANIFEST}; it was not published by seamharden")
    problems = verify_files(folder, read_manifest(folder))
    if problems:
        raise UserError(f"{where} does not match its {MANIFEST}: {'; '.join(problems)}")
    return folder


def check_reachable(repo_id: str, revision: str | None) -> None:
    """One HEAD of ``repo_id``'s config.json, without retries, when it is not cached and not offline.

    huggingface_hub retries a download that has no cached copy five times with backoff (about 23 s
    per file, twice per model load); a Hub that refuses connections would take ~46 s to report.
    Any Hub or network error becomes ``UserError("model <id>: <reason>")`` at once; other errors are
    left to the loader. The endpoint is huggingface_hub's configured one.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str):
        return
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json", revision=revision))
    except Exception as err:
        reason = explain(err, constants.ENDPOINT)
        if reason is None:
            return
        raise UserError(f"model {repo_id}: {reason}") from err
