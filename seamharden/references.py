"""Model references: a Hub id (``name`` or ``org/name``) or a local model directory.

Light on purpose (no torch): the CLI checks references before any model loads. Locally a
directory is recorded by its absolute path (``resolve_model_reference``), so that ``verify`` and
``--resume`` work from any working directory and however the path was typed; what is published
names it without any path (``public_model_reference``: "a local model" and its config hash).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from seamharden.errors import UserError

LOCAL_MODEL = "a local model"
"""How published files name a base that was a local directory (followed by its config hash)."""


def looks_like_path(name: str) -> bool:
    """A Hub id is ``name`` or ``org/name``; anything else with a separator is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or Path(name).exists()


def is_public_local_name(name: str) -> bool:
    """``name`` is what ``public_model_reference`` writes for a local directory (no path to load)."""
    return name.startswith(LOCAL_MODEL)


def check_model_reference(name: str) -> None:
    """Fail early, without network, for a local path that is not a model directory."""
    if is_public_local_name(name):
        raise UserError(f"the base model was {name}, whose path is not published; pass --base with its directory")
    if not looks_like_path(name):
        return
    path = Path(name).expanduser()
    if not path.exists():
        raise UserError(f"model {name}: no such directory")
    if not path.is_dir():
        raise UserError(f"model {name} is a file; pass a model directory or a Hub id")
    if not (path / "config.json").exists():
        raise UserError(f"model {name}: not a Hugging Face model directory (no config.json)")


def check_model_available(name: str, revision: str | None = None) -> None:
    """``check_model_reference``, and for a Hub id one request without retries unless it is cached or
    huggingface_hub is offline (``seamharden.hub.fetch.check_reachable``): an unreachable Hub or a
    missing repo is a one-line UserError before torch is even imported."""
    check_model_reference(name)
    if not looks_like_path(name):
        from seamharden.hub.fetch import check_reachable

        check_reachable(name, revision)


def resolve_model_reference(name: str) -> str:
    """A Hub id as given; a local path as an absolute path without a trailing slash (``~`` expanded,
    symlinks resolved), so ``./tiny-llama/`` and ``./tiny-llama`` are the same model."""
    if not looks_like_path(name):
        return name
    return str(Path(name).expanduser().resolve())


def config_sha256(directory: str | Path) -> str | None:
    """sha256 hex of the directory's ``config.json`` bytes; None when it has none."""
    config = Path(directory).expanduser() / "config.json"
    return hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None


def public_model_reference(name: str) -> str:
    """What published files may say about a model: a Hub id as given; a local directory as
    ``a local model (config sha256 <first 12 hex>)``, or ``a local model`` when it is gone."""
    if is_public_local_name(name) or not looks_like_path(name):
        return name
    digest = config_sha256(name)
    return f"{LOCAL_MODEL} (config sha256 {digest[:12]})" if digest else LOCAL_MODEL
