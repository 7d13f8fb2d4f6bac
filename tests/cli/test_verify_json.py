"""`seamharden verify --json`: one document on stdout matching ``VerifyJson`` on every exit path (docs/ci.md).

The verdict paths (0 / 3 / 4) replace ``run_suite`` with synthetic results; the error paths are real
(usage, integrity, not-an-output), plus an internal error (1) and an interrupt (130) injected
into the suite. A refusing Hub is reached on a loopback port nothing listens on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import huggingface_hub.constants
import pytest

import seamharden.attack.suite
from seamharden.attack import AttackRun, EvalPoint, SuiteResult, verdict
from seamharden.cli.main import main
from seamharden.manifest import write_manifest
from seamharden.recipe.loading import dump_recipe_yaml, load_recipe, recipe_hash
from seamharden.recipe.schema import AttackConfig
from seamharden.verify import VERIFY_JSON_SCHEMA_VERSION, VerifyJson


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch):
    """huggingface_hub read HF_HUB_OFFLINE at import, before conftest set it: make it true here too, so the
    Hub id ``org/base`` is never looked up (verify probes a Hub base once before loading anything)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


HARDENED = {"pass": [3.2, 3.0, 2.9], "fail": [3.0, 2.0, 1.6]}


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _points(harmful, benign):
    return [EvalPoint(step=5 * i, harmful_loss=h, benign_loss=b, refusal_rate=None, benign_accuracy=None)
            for i, (h, b) in enumerate(zip(harmful, benign, strict=True))]


def _fake_suite(monkeypatch, outcome):
    """``run_suite`` returning a pass / fail / inconclusive, or raising ``outcome`` (an exception)."""
    def fake(base, hardened, recipe, progress=None):
        if isinstance(outcome, BaseException):
            raise outcome
        base_h = [3.0, 2.95, 2.9] if outcome == "inconclusive" else [3.0, 2.2, 1.5]
        runs = [AttackRun(config=AttackConfig(lr=1e-4, samples=100), model="base",
                          points=_points(base_h, [2.0, 2.0, 2.1])),
                AttackRun(config=AttackConfig(lr=1e-4, samples=100), model="hardened",
                          points=_points(HARDENED.get(outcome, [3.0, 3.0, 3.0]), [2.0, 2.1, 2.1]))]
        result = SuiteResult(base_model=base, hardened_model=hardened, budget="custom", runs=runs)
        return result, verdict(result, recipe.attack.criteria)

    monkeypatch.setattr(seamharden.attack.suite, "run_suite", fake)


def _output_dir(folder, *, config=True):
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    if config:
        (folder / "config.json").write_text("{}")
    recipe = load_recipe("tiny")
    (folder / "recipe.yaml").write_text(dump_recipe_yaml(recipe), encoding="utf-8")
    write_manifest(folder, base_model="org/base", base_revision=None, recipe_hash=recipe_hash(recipe),
                   data_fingerprints={}, smoke_test={"verdict": "pass"})
    return folder


def _document(out: str, code: int) -> VerifyJson:
    """The one document on stdout, validated against the schema; its exit_code is the process's."""
    doc = VerifyJson.model_validate(json.loads(out))
    assert doc.schema_version == VERIFY_JSON_SCHEMA_VERSION == 1
    assert doc.exit_code == code
    return doc


@pytest.mark.parametrize("status, code", [("pass", 0), ("fail", 3), ("inconclusive", 4)])
def test_verdict_paths_print_the_schema(capsys, monkeypatch, tmp_path, status, code):
    _fake_suite(monkeypatch, status)
    got, out, _ = _run(capsys, "verify", _output_dir(tmp_path / "out"), "--json")
    doc = _document(out, got)
    assert got == code and doc.status == status and doc.error is None, doc.error
    assert doc.reasons and doc.figures is not None and "bounded_ratio" in doc.figures
    assert doc.files_checked == 3 and doc.base_model == "org/base" and doc.recipe == "recipe.yaml"
    assert (doc.unmet == []) == (status == "pass")


def _case(tmp_path, case):
    if case == "missing":
        return [tmp_path / "nope"]
    if case == "a_file":
        (tmp_path / "f.txt").write_text("x")
        return [tmp_path / "f.txt"]
    if case == "not_a_model":
        (tmp_path / "empty").mkdir()
        return [tmp_path / "empty"]
    folder = _output_dir(tmp_path / "out")
    if case == "tampered":
        (folder / "model.safetensors").write_bytes(b"weightz")
    if case == "bad_override":
        return [folder, "attack.nope=1"]
    if case == "unknown_option":
        return [folder, "--bogus"]
    return [folder]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such directory"),
    ("a_file", "is a file"),
    ("not_a_model", "nor a model directory"),
    ("tampered", "changed: model.safetensors"),
    ("bad_override", "attack.nope"),
    ("unknown_option", "--bogus"),
])
def test_exit_2_paths_print_the_schema_with_an_error(capsys, monkeypatch, tmp_path, case, message):
    _fake_suite(monkeypatch, "pass")
    code, out, err = _run(capsys, "verify", *_case(tmp_path, case), "--json")
    doc = _document(out, code)
    assert code == 2 and doc.status == "error" and message in doc.error
    assert doc.reasons == [] and doc.figures is None
    assert err.startswith("error:") and err.count("\n") == 1 and message in err


def test_missing_argument_prints_the_schema(capsys):
    code, out, _ = _run(capsys, "verify", "--json")
    doc = _document(out, code)
    assert code == 2 and doc.status == "error" and "MODEL_OR_DIR" in doc.error and doc.model is None


@pytest.mark.parametrize("raised, code, message", [
    (RuntimeError("boom"), 1, "internal error: RuntimeError: boom"),
    (KeyboardInterrupt(), 130, "aborted"),
])
def test_internal_error_and_interrupt_print_the_schema(capsys, monkeypatch, tmp_path, raised, code, message):
    _fake_suite(monkeypatch, raised)
    folder = _output_dir(tmp_path / "out")
    if code == 1:
        with pytest.raises(RuntimeError):  # an internal error keeps its traceback
            main(["verify", str(folder), "--json"])
        out = capsys.readouterr().out
    else:
        got, out, _ = _run(capsys, "verify", folder, "--json")
        assert got == code
    doc = _document(out, code)
    assert doc.status == "error" and doc.error == message


def test_schema_field_list_is_documented():
    """docs/ci.md documents every field of the schema and its version."""
    from pathlib import Path

    docs = (Path(__file__).parents[2] / "docs" / "ci.md").read_text()
    assert f'"schema_version": {VERIFY_JSON_SCHEMA_VERSION}' in docs
    for name in VerifyJson.model_fields:
        assert f"`{name}`" in docs, f"docs/ci.md lacks {name}"


def _refusing_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: connections to it are refused


@pytest.mark.parametrize("args", [["verify", "acme/model"], ["attack", "acme/model", "--recipe", "tiny"],
                                  ["protect", "acme/model", "out", "--recipe", "tiny"]],
                         ids=" ".join)
def test_a_refusing_hub_is_one_line_within_10s(tmp_path, args):
    """Issue 17 item 9: no retry lines, no 46 s of backoff; huggingface_hub's own env is the CLI's to read."""
    port = _refusing_port()
    env = {"PATH": "/usr/bin:/bin", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "seamharden", *args, "--json"] if args[0] == "verify"
                          else [sys.executable, "-m", "seamharden", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "cannot reach the Hub" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out").exists()
    assert elapsed < 10, f"{elapsed:.1f} s"
    if args[0] == "verify":
        assert "cannot reach the Hub" in VerifyJson.model_validate_json(proc.stdout).error
