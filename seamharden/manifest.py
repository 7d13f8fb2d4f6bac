"""The ``seamharden.json`` manifest: provenance, smoke-test verdict and file hashes of an output dir.

Written last by ``seamharden protect``; read by ``push`` (what is published is exactly the
files it lists) and by ``verify`` (every listed file must match its sha256). No network here.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from seamharden.errors import UserError

MANIFEST = "seamharden.json"
FORMAT = "seamharden-manifest/1"
VERDICTS = ("pass", "fail", "inconclusive", None)
PACKAGES = ("seamharden", "torch", "transformers", "peft", "huggingface_hub", "datasets")
_SKIPPED_DIRS = {".git", ".cache"}
_TMP_PREFIX = f".{MANIFEST}."


def file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give a new file: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str | None]:
    """Installed version of each package in ``PACKAGES`` (None when not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def list_files(out_dir: str | Path) -> list[str]:
    """Sorted posix relpaths of the regular files under ``out_dir``.

    Leaves out the manifest (and its temporary files) and the ``.git`` / ``.cache`` folders
    that git and ``hf download --local-dir`` keep at the top level.
    """
    root = Path(out_dir)
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[0] in _SKIPPED_DIRS or not path.is_file():
            continue
        if rel.as_posix() == MANIFEST or rel.name.startswith(_TMP_PREFIX):
            continue
        found.append(rel.as_posix())
    return sorted(found)


def hash_files(out_dir: str | Path) -> dict[str, str]:
    """``{relpath: sha256}`` of every file that ``list_files`` returns."""
    root = Path(out_dir)
    return {rel: sha256_file(root / rel) for rel in list_files(root)}


def normalize_smoke_test(smoke_test: dict | None) -> dict:
    """``{"ran", "verdict", "forced"}`` with defaults; None means the smoke test did not run."""
    smoke_test = dict(smoke_test or {})
    verdict = smoke_test.get("verdict")
    if verdict not in VERDICTS:
        raise ValueError(f"smoke-test verdict must be one of {VERDICTS}, got {verdict!r}")
    ran = bool(smoke_test.get("ran", verdict is not None))
    return {"ran": ran, "verdict": verdict, "forced": bool(smoke_test.get("forced", False))}


def save_manifest(out_dir: str | Path, manifest: dict) -> dict:
    """Write ``manifest`` to ``out_dir/seamharden.json`` atomically (temporary file + ``os.replace``)."""
    out_dir = Path(out_dir)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=_TMP_PREFIX, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())  # mkstemp makes it 0600; the manifest is as public as the files it lists
        os.replace(tmp, out_dir / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def write_manifest(
    out_dir: str | Path,
    *,
    base_model: str,
    base_revision: str | None,
    recipe_hash: str,
    data_fingerprints: dict,
    smoke_test: dict | None,
    extra: dict | None = None,
) -> dict:
    """Hash every file of ``out_dir`` and write the manifest; returns what was written."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": base_model,
        "base_revision": base_revision,
        "recipe_hash": recipe_hash,
        "data_fingerprints": dict(data_fingerprints),
        "smoke_test": normalize_smoke_test(smoke_test),
        "versions": package_versions(),
        "files": hash_files(out_dir),
        "extra": dict(extra or {}),
    }
    return save_manifest(out_dir, manifest)


def read_manifest(out_dir: str | Path) -> dict:
    """The manifest of ``out_dir``; UserError when it is missing or malformed."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{out_dir} has no {MANIFEST}; is it an output directory of `seamharden protect`?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from err
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise UserError(f"{path} is not a seamharden manifest (no `files` table of sha256 hashes)")
    return manifest


def _is_safe_relpath(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return bool(parts) and not PurePosixPath(rel).is_absolute() and ".." not in parts and "\\" not in rel


def verify_files(out_dir: str | Path, manifest: dict) -> list[str]:
    """Problems with the files the manifest lists: ``missing: p``, ``changed: p``, ``invalid path: p``.

    Files present but not listed are not problems here; see ``unexpected_files``.
    """
    root = Path(out_dir)
    problems = []
    for rel, expected in sorted(manifest["files"].items()):
        if not _is_safe_relpath(rel):
            problems.append(f"invalid path: {rel}")
        elif not (root / rel).is_file():
            problems.append(f"missing: {rel}")
        elif sha256_file(root / rel) != expected:
            problems.append(f"changed: {rel}")
    return problems


def unexpected_files(out_dir: str | Path, manifest: dict) -> list[str]:
    """Files in ``out_dir`` that the manifest does not list (never published or verified)."""
    listed = set(manifest["files"])
    return [rel for rel in list_files(out_dir) if rel not in listed]
