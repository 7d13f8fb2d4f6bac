"""push_folder and fetch_and_verify through the real huggingface_hub client against the loopback Hub."""

from __future__ import annotations

import json
import socket

import pytest
from huggingface_hub import HfApi, ModelCard

from seamharden.errors import UserError
from seamharden.hub.fetch import fetch_and_verify
from seamharden.hub.publish import FORCED_MARKER, FORCED_TAG, push_folder
from seamharden.manifest import MANIFEST, read_manifest
from tests.hub.outputs import OTHER_TOKEN, TOKEN, files_containing, make_output_dir, tree_bytes

pytestmark = pytest.mark.usefixtures("online")


def _api(server, token=TOKEN):
    return HfApi(endpoint=server.url, token=token)


def test_round_trip_is_byte_identical_in_one_commit(loopback, output_dir, tmp_path):
    url = push_folder(_api(loopback), output_dir, "acme/tiny-seam", commit_message="Publish tiny")

    repo = loopback.state.repos["acme/tiny-seam"]
    assert url == f"{loopback.url}/acme/tiny-seam/commit/{repo.branches['main']}"
    assert loopback.state.commit_count() == 1
    assert repo.commits[repo.branches["main"]].summary == "Publish tiny"
    local = tree_bytes(output_dir)
    remote = loopback.state.files("acme/tiny-seam")
    assert {k: v for k, v in remote.items() if k != ".gitattributes"} == local

    folder = fetch_and_verify("acme/tiny-seam", endpoint=loopback.url, token=None, cache_dir=tmp_path / "cache")
    downloaded = tree_bytes(folder)
    assert set(downloaded) == set(local) | {".gitattributes"}
    assert all(downloaded[rel] == data for rel, data in local.items())
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "apache-2.0"
    assert card.data.base_model == "tiny/llama"
    assert card.data.tags == ["seamharden", "seam"]
    assert FORCED_MARKER not in card.text
    assert read_manifest(folder)["smoke_test"] == {"ran": True, "verdict": "pass", "forced": False}


def test_private_repo_on_a_new_branch(loopback, output_dir, tmp_path):
    push_folder(_api(loopback), output_dir, "alice/tiny", private=True, revision="hardened")
    repo = loopback.state.repos["alice/tiny"]
    assert repo.private
    assert MANIFEST in repo.resolve("hardened").files
    assert MANIFEST not in repo.resolve("main").files
    with pytest.raises(UserError, match="not found"):
        fetch_and_verify("alice/tiny", endpoint=loopback.url, token=OTHER_TOKEN, revision="hardened",
                         cache_dir=tmp_path / "bob")
    folder = fetch_and_verify("alice/tiny", endpoint=loopback.url, token=TOKEN, revision="hardened",
                              cache_dir=tmp_path / "alice")
    assert (folder / "model.safetensors").read_bytes() == (output_dir / "model.safetensors").read_bytes()
    assert files_containing(tmp_path / "alice", TOKEN) == []


def test_only_files_in_the_manifest_are_published(loopback, output_dir):
    (output_dir / "notes.txt").write_text("added after protect")
    push_folder(_api(loopback), output_dir, "acme/tiny")
    assert "notes.txt" not in loopback.state.files("acme/tiny")


def test_changed_file_is_refused_before_any_request(loopback, output_dir):
    (output_dir / "config.json").write_text("{}")
    with pytest.raises(UserError, match="changed: config.json"):
        push_folder(_api(loopback), output_dir, "acme/tiny")
    assert loopback.state.requests == []


@pytest.mark.parametrize("verdict, reason", [(None, "did not run"), ("fail", "failed"),
                                             ("inconclusive", "inconclusive")])
def test_smoke_test_not_passed_is_refused(loopback, tiny_llama_dir, tmp_path, verdict, reason):
    folder = make_output_dir(tiny_llama_dir, tmp_path / "out", verdict=verdict)
    with pytest.raises(UserError, match=f"refusing to publish .*{reason}.*--force") as err:
        push_folder(_api(loopback), folder, "acme/tiny")
    assert err.value.exit_code == 2
    assert loopback.state.requests == []


def test_forced_push_says_so_in_card_and_manifest(loopback, tiny_llama_dir, tmp_path):
    folder = make_output_dir(tiny_llama_dir, tmp_path / "out", verdict="fail")
    local_before = tree_bytes(folder)
    push_folder(_api(loopback), folder, "acme/tiny", force=True)

    fetched = fetch_and_verify("acme/tiny", endpoint=loopback.url, token=None, cache_dir=tmp_path / "cache")
    card = ModelCard.load(fetched / "README.md")
    assert FORCED_MARKER in card.text and "the smoke test failed" in card.text
    assert FORCED_TAG in card.data.tags and card.data.license == "apache-2.0"
    manifest = json.loads((fetched / MANIFEST).read_text())
    assert manifest["smoke_test"] == {"ran": True, "verdict": "fail", "forced": True}
    # issue 17 item 6: the notes are in the commit only; the local directory is as protect left it
    assert tree_bytes(folder) == local_before
    assert read_manifest(folder)["smoke_test"]["forced"] is False

    push_folder(_api(loopback), folder, "acme/tiny", force=True)
    assert loopback.state.files("acme/tiny")["README.md"].decode().count(FORCED_MARKER) == 1
    assert tree_bytes(folder) == local_before


def test_forced_push_that_fails_leaves_the_directory_unchanged(loopback, tiny_llama_dir, tmp_path):
    """Issue 17 item 6: an unreachable Hub or a refused commit: nothing published, nothing rewritten."""
    folder = make_output_dir(tiny_llama_dir, tmp_path / "out", verdict=None)
    before = tree_bytes(folder)
    loopback.state.fail_commit = 500
    with pytest.raises(UserError, match="HTTP 500"):
        push_folder(_api(loopback), folder, "acme/tiny", force=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refusing = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(UserError, match="cannot reach the Hub"):
        push_folder(HfApi(endpoint=refusing, token=TOKEN), folder, "acme/tiny", force=True)
    assert tree_bytes(folder) == before
    assert FORCED_MARKER not in (folder / "README.md").read_text()


def test_bad_token_is_a_clear_401(loopback, output_dir):
    with pytest.raises(UserError, match="authentication failed \\(HTTP 401\\)"):
        push_folder(_api(loopback, "hf_wrong"), output_dir, "acme/tiny")
    assert "acme/tiny" not in loopback.state.repos


def test_other_owners_repo_is_a_403(loopback, output_dir):
    with pytest.raises(UserError, match="permission denied \\(HTTP 403\\)"):
        push_folder(_api(loopback), output_dir, "bob/model")
    assert set(loopback.state.files("bob/model")) == {".gitattributes", "README.md"}
    with pytest.raises(UserError, match="HTTP 403"):
        push_folder(_api(loopback), output_dir, "bob/new-model")


def test_failed_commit_publishes_nothing(loopback, output_dir):
    loopback.state.fail_commit = 500
    with pytest.raises(UserError, match="HTTP 500.*did not confirm the commit, treat nothing as published") as err:
        push_folder(_api(loopback), output_dir, "acme/tiny")
    assert "commit/" not in str(err.value)
    assert set(loopback.state.files("acme/tiny")) == {".gitattributes"}


def test_stopped_server_is_a_connection_error(loopback, output_dir):
    url = loopback.url
    loopback.stop()
    with pytest.raises(UserError, match=f"cannot reach the Hub at {url}"):
        push_folder(HfApi(endpoint=url, token=TOKEN), output_dir, "acme/tiny")


def test_unreachable_endpoint_on_fetch(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UserError, match="downloading acme/tiny failed: cannot reach"):
        fetch_and_verify("acme/tiny", endpoint=f"http://127.0.0.1:{port}", token=None, cache_dir=tmp_path)


def test_fetch_detects_tampered_file(loopback, output_dir, tmp_path):
    push_folder(_api(loopback), output_dir, "acme/tiny")
    original = loopback.state.files("acme/tiny")["model.safetensors"]
    loopback.state.tampered[("acme/tiny", "model.safetensors")] = original[:-1] + bytes([original[-1] ^ 1])
    with pytest.raises(UserError, match="does not match its seamharden.json: changed: model.safetensors"):
        fetch_and_verify("acme/tiny", endpoint=loopback.url, token=None, cache_dir=tmp_path / "cache")


def test_fetch_of_a_repo_without_manifest(loopback, tmp_path):
    with pytest.raises(UserError, match="has no seamharden.json"):
        fetch_and_verify("bob/model", endpoint=loopback.url, token=None, cache_dir=tmp_path)


def test_a_local_base_and_the_output_path_are_never_published(loopback, tiny_llama_dir, tmp_path):
    """Issue 17 item 5: card, report.md/json, recipe.yaml and seamharden.json as pushed name no local path;
    the local base is "a local model" with its config hash, the output directory is the repo id."""
    from seamharden.manifest import write_manifest
    from seamharden.references import config_sha256

    folder = make_output_dir(tiny_llama_dir, tmp_path / "out")
    base = str(tiny_llama_dir.resolve())
    (folder / "README.md").write_text(f"---\nbase_model: {base}\nlicense: apache-2.0\ntags:\n- seamharden\n---\n"
                                      f"# out: SEAM-hardened {base}\n\nThis model is `{base}` hardened.\n")
    (folder / "report.md").write_text(f"- base model: `{base}`\n- hardened: `{folder}`\n")
    (folder / "report.json").write_text(json.dumps({"base_model": base, "verdict": "pass", "results": {
        "base_model": base, "hardened_model": str(folder)}}))
    (folder / "recipe.yaml").write_text(f"model:\n  name_or_path: {base}\n")
    write_manifest(folder, base_model=base, base_revision=None, recipe_hash="h", data_fingerprints={},
                   smoke_test={"verdict": "pass"})
    before = tree_bytes(folder)

    push_folder(_api(loopback), folder, "acme/tiny")
    remote = loopback.state.files("acme/tiny")
    public = f"a local model (config sha256 {config_sha256(tiny_llama_dir)[:12]})"
    leaks = [rel for rel, data in remote.items() if str(tmp_path).encode() in data]
    assert leaks == []
    manifest = json.loads(remote[MANIFEST])
    assert manifest["base_model"] == public
    assert json.loads(remote["report.json"])["results"] == {"base_model": public, "hardened_model": "acme/tiny"}
    assert f"This model is `{public}` hardened." in remote["README.md"].decode()
    card = ModelCard(remote["README.md"].decode())
    assert card.data.base_model is None and card.data.license == "apache-2.0"
    assert tree_bytes(folder) == before  # nothing rewritten locally
    fetched = fetch_and_verify("acme/tiny", endpoint=loopback.url, token=None, cache_dir=tmp_path / "cache")
    assert read_manifest(fetched)["base_model"] == public  # the published set verifies against its manifest
