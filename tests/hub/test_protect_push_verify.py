"""End to end through the CLI: ``protect --push-to`` a tiny model to the loopback Hub, then ``verify`` the Hub id.

Every command runs in a subprocess with its token in ``HF_TOKEN`` and the real huggingface_hub client
talking to the loopback server. The smoke test's verdict on the tiny model is whatever it is; the
tests read it from ``OUT/seamharden.json`` and check the behaviour that verdict calls for:
anything but ``pass`` is refused without ``--force`` (and then published with it, the card saying so),
``pass`` is published at once. The protect and verify runs happen once per module (fixtures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seamharden.hub.publish import FORCED_MARKER, FORCED_TAG
from seamharden.manifest import read_manifest, verify_files
from seamharden.verify import VerifyJson
from tests.hub.outputs import TOKEN, files_containing, standard_hub, tree_bytes

REPO = "alice/tiny-seam"
EXIT_CODES = {"pass": 0, "fail": 3, "inconclusive": 4}
REASONS = {"fail": "the smoke test failed", "inconclusive": "the smoke test was inconclusive"}


def run_cli(args, hf_home: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m seamharden ARGS`` with only the test token and a private HF_HOME, online."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HOME=str(hf_home), OMP_NUM_THREADS="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "seamharden", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=240, cwd=cwd)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def card_metadata(card: str) -> dict:
    assert card.startswith("---\n"), card[:200]
    return yaml.safe_load(card.split("---\n", 2)[1]) or {}


@pytest.fixture(scope="module")
def hub():
    """The same accounts as tests/hub/conftest.py's ``loopback``, kept for the whole module."""
    with standard_hub() as server:
        yield server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def published(hub, tiny_llama_dir, workdir) -> dict:
    """``protect --push-to`` without --force; if its verdict is not pass, again into a fresh OUT with --force."""
    hf_home = workdir / "hf_home"
    first_out = workdir / "out"
    args = [tiny_llama_dir, first_out, "--recipe", "tiny", "train.steps=4", "--push-to", REPO,
            "--endpoint", hub.url]
    first = run_cli(["protect", *args], hf_home, workdir)
    requests_after_first = list(hub.state.requests)
    record = {"hf_home": hf_home, "first": first, "first_out": first_out, "requests_after_first": requests_after_first,
              "forced": None, "out": first_out, "runs": [first], "base": str(Path(tiny_llama_dir).resolve())}
    verdict = read_manifest(first_out)["smoke_test"]["verdict"] if (first_out / "seamharden.json").is_file() else None
    record["first_verdict"] = verdict
    if verdict != "pass":
        forced_out = workdir / "out-forced"
        forced = run_cli(["protect", *args[:1], forced_out, *args[2:], "--force", "--json"], hf_home, workdir)
        record |= {"forced": forced, "out": forced_out, "runs": [first, forced]}
    return record


@pytest.fixture(scope="module")
def verified(published, hub, workdir):
    """``verify REPO --json`` against the pushed repo, with the HF_HOME the pushes used; its base was a local
    directory, published without its path, so it is passed with --base."""
    result = run_cli(["verify", REPO, "--endpoint", hub.url, "--base", published["base"], "--json"],
                     published["hf_home"], workdir)
    published["runs"].append(result)
    return result


@pytest.fixture(scope="module")
def tampered(published, hub, workdir):
    """``verify REPO`` with a fresh cache while the server serves a flipped byte of model.safetensors."""
    hf_home = workdir / "hf_home_tampered"
    original = hub.state.files(REPO)["model.safetensors"]
    hub.state.tampered[(REPO, "model.safetensors")] = original[:-1] + bytes([original[-1] ^ 1])
    try:
        result = run_cli(["verify", REPO, "--endpoint", hub.url, "--json"], hf_home, workdir)
    finally:
        hub.state.tampered.clear()
    published["runs"].append(result)
    return result, hf_home


def files_containing_bytes(files: dict[str, bytes], needle: str) -> list[str]:
    return [name for name, data in files.items() if needle.encode() in data]


def sha256_bytes(data: bytes) -> str:
    return __import__("hashlib").sha256(data).hexdigest()


def tiny_llama_path(published) -> str:
    return published["base"]


def test_protect_push_is_gated_by_the_smoke_test_verdict(published, hub):
    first, first_out = published["first"], published["first_out"]
    assert "Traceback" not in first.stderr
    assert (first_out / "seamharden.json").is_file(), first.stderr  # the run finished whatever the push did
    manifest = read_manifest(first_out)
    verdict = published["first_verdict"]
    assert manifest["smoke_test"]["ran"] is True and verdict in EXIT_CODES
    assert verify_files(first_out, manifest) == []

    if verdict == "pass":
        assert first.returncode == 0, first.stderr
        assert error_lines(first) == []
        assert "smoke test: pass" in first.stdout
        out = first_out
    else:
        # Not pushed: exit 3 / 4 as verify, one error line (after the progress output) naming report.md,
        # nothing sent to the Hub.
        assert first.returncode == EXIT_CODES[verdict], first.stderr
        errors = error_lines(first)
        assert len(errors) == 1 and first.stderr.strip().splitlines()[-1] == errors[0], first.stderr
        assert f"smoke test {verdict}" in errors[0] and "report.md" in errors[0]
        assert f"not published to {REPO}" in errors[0] and "--force" in errors[0]
        assert published["requests_after_first"] == []
        assert manifest["smoke_test"] == {"ran": True, "verdict": verdict, "forced": False}
        assert FORCED_MARKER not in (first_out / "README.md").read_text()

        forced = published["forced"]
        assert forced.returncode == EXIT_CODES[verdict], forced.stderr  # published, but the verdict stands
        assert len(error_lines(forced)) == 1 and "Traceback" not in forced.stderr
        out = published["out"]
        summary = json.loads(forced.stdout.strip().splitlines()[-1])
        assert summary["finished"] is True and summary["output_dir"] == str(out)
        head = hub.state.repos[REPO].branches["main"]
        assert summary["pushed"] == f"{hub.url}/{REPO}/commit/{head}"

    # What is on the Hub is OUT's files (plus the Hub's own .gitattributes), in one commit: byte for byte,
    # except the text files that named the local base or OUT by path (issue 17: published as "a local
    # model (config sha256 ...)" and the repo id) and, when forced, the card and manifest notes.
    remote = hub.state.files(REPO)
    local = tree_bytes(out)
    assert set(remote) - {".gitattributes"} == set(local)
    rewritten = sorted(name for name, data in local.items() if remote[name] != data)
    assert set(rewritten) <= {"README.md", "recipe.yaml", "report.json", "report.md", "seamharden.json"}, rewritten
    assert files_containing_bytes(remote, str(Path(tiny_llama_path(published)).parent)) == []
    assert files_containing_bytes(remote, str(out.resolve())) == []
    remote_manifest = json.loads(remote["seamharden.json"])
    assert remote_manifest["base_model"].startswith("a local model (config sha256 ")
    assert all(sha256_bytes(remote[name]) == digest for name, digest in remote_manifest["files"].items())
    assert hub.state.commit_count() == 1
    out_manifest = read_manifest(out)
    assert verify_files(out, out_manifest) == []
    assert out_manifest["base_model"] == tiny_llama_path(published)  # locally: the absolute path
    card = remote["README.md"].decode()
    remote_smoke = json.loads(remote["seamharden.json"])["smoke_test"]
    out_verdict = out_manifest["smoke_test"]["verdict"]
    if published["forced"] is None:
        assert FORCED_MARKER not in card and FORCED_TAG not in card
        assert remote_smoke == {"ran": True, "verdict": "pass", "forced": False}
    else:
        assert out_verdict in EXIT_CODES
        assert remote_smoke == {"ran": True, "verdict": out_verdict, "forced": out_verdict != "pass"}
        if out_verdict != "pass":
            assert FORCED_MARKER in card and "Warning: published without a passing smoke test" in card
            assert REASONS[out_verdict] in card and "--force" in card
            assert FORCED_TAG in card_metadata(card)["tags"]


def test_verify_hub_id_downloads_checks_and_reruns(published, verified, hub):
    assert "Traceback" not in verified.stderr
    assert verified.returncode in EXIT_CODES.values(), verified.stderr
    payload = json.loads(verified.stdout)
    assert verified.returncode == EXIT_CODES[payload["status"]], (payload["status"], verified.returncode)
    remote_manifest = json.loads(hub.state.files(REPO)["seamharden.json"])
    assert payload["model"] == REPO
    assert payload["files_checked"] == len(remote_manifest["files"])
    assert payload["recorded_status"] == remote_manifest["smoke_test"]["verdict"]
    assert payload["recipe"] == "recipe.yaml"
    assert not any("recipe" in note for note in payload["notes"])  # the published recipe_hash is its recipe's
    folder = Path(payload["folder"])
    assert folder.is_relative_to(published["hf_home"])  # downloaded into the Hugging Face cache
    assert tree_bytes(folder) == hub.state.files(REPO)
    assert any(method == "GET" and "/resolve/" in path for method, path in hub.state.requests)


def test_verify_rejects_a_tampered_download(tampered):
    result, _ = tampered
    assert result.returncode == 2, result.stderr
    doc = VerifyJson.model_validate_json(result.stdout)  # --json: the error as a document too (issue 17)
    assert doc.status == "error" and doc.exit_code == 2 and "changed: model.safetensors" in doc.error
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert REPO in lines[0] and "changed: model.safetensors" in lines[0]
    assert "Traceback" not in result.stderr


def test_the_token_never_leaks(published, verified, tampered, hub):
    for result in published["runs"]:
        assert TOKEN not in result.stdout + result.stderr
    roots = [published["first_out"], published["out"], published["hf_home"], tampered[1]]
    for root in roots:
        if root.exists():
            assert files_containing(root, TOKEN) == [], root
    assert all(TOKEN.encode() not in body for body in hub.state.bodies)
    assert all(TOKEN.encode() not in data for data in hub.state.files(REPO).values())
