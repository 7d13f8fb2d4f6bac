"""``seamharden.hub.errors.explain``: the one mapping from huggingface_hub's typed errors to one-line reasons."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from seamharden.hub.errors import explain
from seamharden.modeling import _describe


def _http_error(cls, status, server="server says no"):
    """An instance of ``cls`` with a status and server message, without a live HTTP response."""
    err = cls.__new__(cls)
    Exception.__init__(err, f"{status} Client Error\nsecond line")
    err.response = SimpleNamespace(status_code=status)
    err.server_message = server
    return err


@pytest.mark.parametrize("cls, status, expected", [
    (GatedRepoError, 403, "the repository is gated (HTTP 403): accept its license"),
    (RepositoryNotFoundError, 404, "repository not found, or the token cannot access it (HTTP 404): server says no"),
    (RevisionNotFoundError, 404, "revision not found (HTTP 404): server says no"),
    (HfHubHTTPError, 401, "authentication failed (HTTP 401): https://hub.example rejected the token"),
    (HfHubHTTPError, 500, "the Hub answered HTTP 500: server says no"),
])
def test_typed_errors_are_one_line_reasons(cls, status, expected):
    reason = explain(_http_error(cls, status), "https://hub.example")
    assert reason.startswith(expected) and "\n" not in reason


def test_unknown_endpoint_says_the_hub_and_other_errors_are_not_explained():
    assert explain(_http_error(HfHubHTTPError, 401), None).startswith("authentication failed (HTTP 401): the Hub ")
    assert explain(KeyError("x"), None) is None


def test_model_loading_uses_the_same_mapping():
    gated = _http_error(GatedRepoError, 403)
    assert _describe(gated, "org/m") == f"model org/m: {explain(gated, None)}"
    assert _describe(OSError("org/m is not a local folder\nmore"), "org/m") == (
        "cannot load model org/m: org/m is not a local folder")
