"""Where the Hub endpoint and token come from: huggingface_hub's own configuration, read in one place.

The CLI edge calls these and hands the results down; library functions (``publish``,
``fetch_and_verify``, ``verify``) take ``endpoint`` and ``token`` as arguments and never look up
a token themselves (``verify`` with ``endpoint=None`` uses ``resolve_endpoint(None)``, the
endpoint huggingface_hub itself would use).
"""

from __future__ import annotations


def resolve_endpoint(endpoint: str | None) -> str:
    """``endpoint`` without a trailing slash, else huggingface_hub's (``HF_ENDPOINT``, else https://huggingface.co)."""
    if endpoint:
        return endpoint.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT


def resolve_token() -> str | None:
    """huggingface_hub's token: ``HF_TOKEN``, else the saved login (``hf auth login``); None when neither."""
    from huggingface_hub import get_token

    return get_token()
