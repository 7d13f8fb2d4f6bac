"""``seamharden push`` in a subprocess, with its token from the environment, against the loopback Hub."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from seamharden.hub.publish import FORCED_MARKER
from tests.hub.outputs import TOKEN, files_containing, make_output_dir, standard_hub


@pytest.fixture
def loopback():
    with standard_hub() as server:
        yield server


@pytest.fixture
def hf_home(tmp_path):
    return tmp_path / "hf_home"


def run_push(args, hf_home, token=TOKEN, **env):
    """Run ``python -m seamharden push ARGS`` with a clean Hugging Face environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    base.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1", **env)
    if token is not None:
        base["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "seamharden", "push", *map(str, args)], env=base,
                          capture_output=True, text=True, timeout=60, cwd=hf_home.parent)


def assert_one_line_error(result, *needles):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert "commit/" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_push_prints_commit_url_and_never_leaks_the_token(loopback, tiny_llama_dir, tmp_path, hf_home):
    out = make_output_dir(tiny_llama_dir, tmp_path / "out")
    result = run_push([out, "acme/tiny-seam", "--endpoint", loopback.url, "--commit-message", "v1"], hf_home)

    assert result.returncode == 0, result.stderr
    repo = loopback.state.repos["acme/tiny-seam"]
    assert result.stdout.strip() == f"{loopback.url}/acme/tiny-seam/commit/{repo.branches['main']}"
    assert loopback.state.commit_count() == 1
    assert TOKEN not in result.stdout + result.stderr
    assert files_containing(out, TOKEN) == []
    assert not hf_home.exists() or files_containing(hf_home, TOKEN) == []
    assert all(TOKEN.encode() not in body for body in loopback.state.bodies)
    assert all(TOKEN.encode() not in data for data in loopback.state.files("acme/tiny-seam").values())


def test_saved_login_and_configured_endpoint(loopback, tiny_llama_dir, tmp_path, hf_home):
    out = make_output_dir(tiny_llama_dir, tmp_path / "out")
    hf_home.mkdir()
    (hf_home / "token").write_text(TOKEN)
    result = run_push([out, "acme/tiny", "--revision", "seam", "--private"], hf_home, token=None,
                      HF_ENDPOINT=loopback.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{loopback.url}/acme/tiny/commit/")
    assert loopback.state.repos["acme/tiny"].private
    assert "seamharden.json" in loopback.state.files("acme/tiny", "seam")
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize("verdict, reason", [(None, "the smoke test did not run"), ("fail", "the smoke test failed")])
def test_refuses_without_force(loopback, tiny_llama_dir, tmp_path, hf_home, verdict, reason):
    out = make_output_dir(tiny_llama_dir, tmp_path / "out", verdict=verdict)
    result = run_push([out, "acme/tiny", "--endpoint", loopback.url], hf_home)
    assert result.returncode == 2
    assert_one_line_error(result, "refusing to publish", reason, "--force")
    assert loopback.state.requests == []


def test_force_publishes_and_the_card_says_so(loopback, tiny_llama_dir, tmp_path, hf_home):
    out = make_output_dir(tiny_llama_dir, tmp_path / "out", verdict=None)
    result = run_push([out, "acme/tiny", "--endpoint", loopback.url, "--force"], hf_home)
    assert result.returncode == 0, result.stderr
    remote = loopback.state.files("acme/tiny")
    card = remote["README.md"].decode()
    assert FORCED_MARKER in card and "the smoke test did not run" in card
    assert json.loads(remote["seamharden.json"])["smoke_test"] == {"ran": False, "verdict": None, "forced": True}


def test_bad_token_is_one_line_401(loopback, tiny_llama_dir, tmp_path, hf_home):
    out = make_output_dir(tiny_llama_dir, tmp_path / "out")
    result = run_push([out, "acme/tiny", "--endpoint", loopback.url], hf_home, token="hf_not_a_valid_token")
    assert_one_line_error(result, "HTTP 401", "HF_TOKEN")
    assert "hf_not_a_valid_token" not in result.stderr


def test_missing_token(loopback, tiny_llama_dir, tmp_path, hf_home):
    out = make_output_dir(tiny_llama_dir, tmp_path / "out")
    result = run_push([out, "acme/tiny", "--endpoint", loopback.url], hf_home, token=None)
    assert_one_line_error(result, "no Hugging Face token")
    assert loopback.state.requests == []


def test_another_owners_repo_is_one_line_403(loopback, tiny_llama_dir, tmp_path, hf_home):
    out = make_output_dir(tiny_llama_dir, tmp_path / "out")
    result = run_push([out, "bob/model", "--endpoint", loopback.url], hf_home)
    assert_one_line_error(result, "HTTP 403", "bob/model")
    assert set(loopback.state.files("bob/model")) == {".gitattributes", "README.md"}


def test_connection_refused(tiny_llama_dir, tmp_path, hf_home):
    out = make_output_dir(tiny_llama_dir, tmp_path / "out")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_push([out, "acme/tiny", "--endpoint", f"http://127.0.0.1:{port}"], hf_home)
    assert_one_line_error(result, f"cannot reach the Hub at http://127.0.0.1:{port}")


def test_interrupted_upload_is_not_reported_as_published(loopback, tiny_llama_dir, tmp_path, hf_home):
    out = make_output_dir(tiny_llama_dir, tmp_path / "out")
    loopback.state.fail_commit = 500
    result = run_push([out, "acme/tiny", "--endpoint", loopback.url], hf_home)
    assert_one_line_error(result, "HTTP 500", "did not confirm the commit")
    assert result.stdout == ""
    assert set(loopback.state.files("acme/tiny")) == {".gitattributes"}
