"""Turn Hub client exceptions into one-line ``UserError``s that never echo credentials.

The one place huggingface_hub's typed errors are read: ``hub_errors`` for our own Hub calls
(publish, fetch), ``explain`` also for model loading (``seamharden.modeling``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from seamharden.errors import UserError

_TRANSPORT_ERRORS = (("httpx2", "TransportError"), ("httpx", "TransportError"),
                     ("requests", "ConnectionError"), ("requests", "Timeout"))


def one_line(text: str | None, limit: int = 300) -> str:
    """``text`` with whitespace runs collapsed to single spaces, cut at ``limit`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _network_error_types() -> tuple[type[BaseException], ...]:
    """Transport-level error classes of whichever HTTP client libraries are loaded."""
    found = []
    for module_name, attr in _TRANSPORT_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(getattr(module, attr, None), type):
            found.append(getattr(module, attr))
    return tuple(found)


def explain(err: BaseException, endpoint: str | None) -> str | None:
    """A one-line reason for a Hub client error, or None when ``err`` is not one.

    ``endpoint`` is named in the reason; None (a caller that let huggingface_hub pick it) says "the Hub".
    """
    name = endpoint or "the Hub"
    if isinstance(err, OfflineModeIsEnabled):
        return f"offline mode is on (HF_HUB_OFFLINE); unset it to reach {name}"
    if isinstance(err, _network_error_types()):
        at = f"the Hub at {endpoint}" if endpoint else "the Hub"
        return f"cannot reach {at} ({type(err).__name__}: {one_line(str(err), 120)})"
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code
        server = one_line(err.server_message) or "no details"
        if isinstance(err, GatedRepoError):
            return (f"the repository is gated (HTTP {status}): accept its license on the Hub and log in "
                    "(`hf auth login`)")
        if isinstance(err, RevisionNotFoundError):
            return f"revision not found (HTTP {status}): {server}"
        if isinstance(err, RepositoryNotFoundError):
            return f"repository not found, or the token cannot access it (HTTP {status}): {server}"
        if status == 401:
            return (f"authentication failed (HTTP 401): {name} rejected the token; "
                    "set HF_TOKEN or run `hf auth login`")
        if status == 403:
            return f"permission denied (HTTP 403): {server}; the token's account cannot write there"
        return f"the Hub answered HTTP {status}: {server}"
    if isinstance(err, LocalEntryNotFoundError):
        cause = err.__cause__
        reason = explain(cause, endpoint) if cause is not None else None
        return reason or f"not available from {name} and not cached ({one_line(str(err), 160)})"
    return None


@contextmanager
def hub_errors(action: str, endpoint: str, suffix: str = "") -> Iterator[None]:
    """Re-raise Hub client errors inside the block as ``UserError("<action> failed: <reason><suffix>")``."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        reason = explain(err, endpoint)
        if reason is None:
            if isinstance(err, ValueError):
                reason = one_line(str(err))
            else:
                raise
        raise UserError(f"{action} failed: {reason}{suffix}") from err
