"""End to end on the CPU: protect a tiny local model, resume, refuse bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from seamharden.manifest import read_manifest, verify_files
from seamharden.protect import protect
from seamharden.recipe.loading import load_recipe

FAST = ["train.steps=6", "train.checkpoint_every=2", "data.max_length=48"]


def _cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "seamharden", *args], capture_output=True, text=True, env=env, cwd=cwd)


def _losses(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss_ul"], r["loss_up"], r["loss_sd"], r["grad_norm"]) for r in rows]


def test_protect_writes_a_complete_output_directory(tiny_llama_dir, tmp_path):
    out = tmp_path / "out"
    proc = _cli("protect", str(tiny_llama_dir), str(out), "--recipe", "tiny", "--no-smoke-test", "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["finished"] and summary["steps"] == 6
    files = ("model.safetensors", "config.json", "tokenizer.json", "recipe.yaml", "metrics.jsonl", "seamharden.json")
    for name in files:
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists() and not (out / "run.json").exists()
    manifest = read_manifest(out)
    assert manifest["base_model"] == str(tiny_llama_dir)
    assert manifest["smoke_test"] == {"ran": False, "verdict": None, "forced": False}
    assert set(manifest["data_fingerprints"]) >= {"adv", "aln", "bgn"}
    assert verify_files(out, manifest) == []
    assert load_recipe(str(out / "recipe.yaml")).train.steps == 6
    assert len(_losses(out)) == 6
    for line in (out / "metrics.jsonl").read_text().splitlines():  # strict JSON: no bare NaN
        row = json.loads(line, parse_constant=lambda c: pytest.fail(f"metrics.jsonl holds {c}"))
        assert row["estimate_consistency"] is None  # hvp: not checked
    mask = os.umask(0)
    os.umask(mask)
    for name in ("model.safetensors", "seamharden.json", "config.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    before, after = load_file(tiny_llama_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not before[k].equal(after[k]) for k in before)


def test_resume_reproduces_the_uninterrupted_losses(tiny_llama_dir, tmp_path):
    recipe = load_recipe("tiny", FAST)
    full, split = tmp_path / "full", tmp_path / "split"
    protect(str(tiny_llama_dir), full, recipe, smoke_test=None)
    first = protect(str(tiny_llama_dir), split, recipe, stop_after=3, smoke_test=None)
    assert not first.finished and first.steps_done == 3
    assert not (split / "seamharden.json").exists()
    with pytest.raises(Exception, match="--resume"):
        protect(str(tiny_llama_dir), split, recipe, smoke_test=None)
    second = protect(str(tiny_llama_dir), split, recipe, resume=True, smoke_test=None)
    assert second.finished and second.steps_done == 6
    assert _losses(split) == _losses(full)
    assert load_file(split / "model.safetensors").keys() == load_file(full / "model.safetensors").keys()
    for key, value in load_file(full / "model.safetensors").items():
        assert value.equal(load_file(split / "model.safetensors")[key]), key


def test_eight_bit_optimizer_path_runs(tiny_llama_dir, tmp_path):
    out = tmp_path / "out8"
    recipe = load_recipe("tiny", [*FAST, "train.steps=2", "train.optimizer=adamw8bit"])
    assert protect(str(tiny_llama_dir), out, recipe, smoke_test=None).finished
    assert len(_losses(out)) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--recipe", "tiny", "train.bogus=1"], "bogus"),
        (["--recipe", "tiny", "train.lr=fast"], "train.lr"),
        (["--recipe", "tiny"], "no such directory"),
    ],
)
def test_user_errors_are_one_line_exit_2(tiny_llama_dir, tmp_path, args, message):
    model = str(tmp_path / "missing-model") if message == "no such directory" else str(tiny_llama_dir)
    proc = _cli("protect", model, str(tmp_path / "o"), *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_dry_run_prints_resolved_recipe_and_memory(tiny_llama_dir, tmp_path):
    import yaml

    long_path = str(tmp_path / ("d" * 90) / "adv.jsonl")  # a line longer than 80 columns must not be wrapped
    proc = _cli("protect", str(tiny_llama_dir), str(tmp_path / "o"), "--recipe", "default", "--dry-run",
                "seam.beta=0.5", "data.adv.kind=local", f"data.adv.path={long_path}")
    assert proc.returncode == 0, proc.stderr
    assert "beta: 0.5" in proc.stdout and "memory estimate" in proc.stdout
    shown = yaml.safe_load(proc.stdout)  # the whole output is valid YAML (the figures are # comments)
    expected = load_recipe("default", ["seam.beta=0.5", "data.adv.kind=local", f"data.adv.path={long_path}"])
    assert shown == {**expected.model_dump(mode="json"),
                     "model": {**expected.model.model_dump(mode="json"), "name_or_path": str(tiny_llama_dir)}}
    assert "# model.dtype auto -> float32 on this machine (cpu); memory estimate (GiB, float32 weights)" \
        in proc.stdout
    assert not (tmp_path / "o").exists()


def test_refuses_to_overwrite_a_finished_directory(tiny_llama_dir, tmp_path):
    out = tmp_path / "done"
    recipe = load_recipe("tiny", [*FAST, "train.steps=1"])
    protect(str(tiny_llama_dir), out, recipe, smoke_test=None)
    proc = _cli("protect", str(tiny_llama_dir), str(out), "--recipe", "tiny", "--no-smoke-test")
    assert proc.returncode == 2 and "already holds a finished" in proc.stderr


def test_lora_recipe_trains_adapters_and_saves_a_merged_model(tiny_llama_dir, tmp_path):
    out = tmp_path / "lora"
    recipe = load_recipe("lora", [*FAST, "train.steps=2", "model.dtype=float32", "model.gradient_checkpointing=false",
                                  "model.lora.target_modules=[q_proj,v_proj]", "data.adv.kind=builtin",
                                  "data.adv.path=adv", "data.aln.kind=builtin", "data.aln.path=adv",
                                  "data.bgn.kind=builtin", "data.bgn.path=bgn", "data.bgn.columns.input=null",
                                  "data.adv.where={}", "data.aln.where={}", "data.bgn.columns.response=response",
                                  "data.bgn.columns.prompt=prompt", "train.optimizer=adamw"])
    assert protect(str(tiny_llama_dir), out, recipe, smoke_test=None).finished
    saved = load_file(out / "model.safetensors")
    base = load_file(tiny_llama_dir / "model.safetensors")
    assert saved.keys() == base.keys()  # merged: plain weights, no adapter keys
    changed = [k for k in base if not base[k].equal(saved[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)


def test_protect_with_smoke_test_then_verify(tiny_llama_dir, tmp_path):
    """The whole CPU path: harden, attack base and hardened, report, manifest, verify's exit code."""
    from seamharden.report import load_report

    out = tmp_path / "smoke"
    proc = _cli("protect", str(tiny_llama_dir), str(out), "--recipe", "tiny", "--json", "train.steps=4")
    manifest = read_manifest(out)
    assert manifest["smoke_test"]["ran"] is True
    status = manifest["smoke_test"]["verdict"]
    assert status in ("pass", "fail", "inconclusive")
    assert proc.returncode == {"pass": 0, "fail": 3, "inconclusive": 4}[status], proc.stderr  # as verify's
    assert json.loads(proc.stdout.strip().splitlines()[-1])["exit_code"] == proc.returncode
    if status != "pass":
        last = proc.stderr.strip().splitlines()[-1]
        assert last == f"error: smoke test {status}: the hardened model stays in {out}; the reasons are in " \
                       f"{out / 'report.md'}"
    # stderr is not a terminal here: plain lines, the smoke test's attacks named with their losses
    assert "step 4/4 ul " in proc.stderr and "stage: smoke-test" in proc.stderr
    assert "hardened: attack 2 of 2" in proc.stderr and "harmful " in proc.stderr and "benign " in proc.stderr
    report = load_report(out)
    assert report.verdict.status == status
    assert {r.model for r in report.results.runs} == {"base", "hardened"}

    # its base side can stand in for a later run of the same grid; a different grid is refused before loading
    proc = _cli("protect", str(tiny_llama_dir), str(tmp_path / "again"), "--recipe", "tiny", "train.steps=4",
                "attack.eval_samples=3", "--base-results", str(out))
    assert proc.returncode == 2 and "cannot stand in" in proc.stderr and "evaluation settings" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "again").exists()
    for png in (out / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert verify_files(out, manifest) == []
    verified = _cli("verify", str(out), "--json")
    assert verified.returncode == {"pass": 0, "fail": 3, "inconclusive": 4}[status], verified.stderr


def _signal_a_long_run(model_dir, out, signum) -> subprocess.CompletedProcess:
    """Start a 500-step protect, send ``signum`` once two steps are logged, wait for it to end."""
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "seamharden", "protect", str(model_dir), str(out), "--recipe", "tiny",
            "--no-smoke-test", "train.steps=500", "train.checkpoint_every=1000", "data.max_length=48"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def test_ctrl_c_checkpoints_and_resume_continues(tiny_llama_dir, tmp_path):
    import signal

    out = tmp_path / "interrupted"
    proc = _signal_a_long_run(tiny_llama_dir, out, signal.SIGINT)
    stderr = proc.stderr
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted after step") and "--resume" in last and "Traceback" not in stderr
    done = len(_losses(out))
    assert (out / "checkpoints" / f"step-{done}").is_dir() and not (out / "seamharden.json").exists()
    resumed = _cli("protect", str(tiny_llama_dir), str(out), "--recipe", "tiny", "--no-smoke-test", "--resume",
                   "--stop-after", "1", "train.steps=500", "train.checkpoint_every=1000", "data.max_length=48")
    assert resumed.returncode == 0, resumed.stderr
    assert [row[0] for row in _losses(out)] == list(range(1, done + 2))


def test_interrupted_smoke_test_resumes_without_retraining(tiny_llama_dir, tmp_path):
    from seamharden.errors import UserError

    recipe = load_recipe("tiny", [*FAST, "train.steps=2"])
    out = tmp_path / "smoke-interrupted"

    def interrupted(base, out_dir, recipe, hardening):
        raise KeyboardInterrupt

    with pytest.raises(UserError, match="during the smoke test") as err:
        protect(str(tiny_llama_dir), out, recipe, smoke_test=interrupted)
    assert err.value.exit_code == 130
    assert json.loads((out / "run.json").read_text())["stage"] == "trained"
    assert not (out / "seamharden.json").exists()
    trained = load_file(out / "model.safetensors")
    seen = []
    result = protect(str(tiny_llama_dir), out, recipe, resume=True,
                     smoke_test=lambda base, d, r, h: seen.append(d) or {"ran": True, "verdict": "pass"})
    assert result.finished and seen == [out]
    assert len(_losses(out)) == 2  # not retrained
    assert all(v.equal(load_file(out / "model.safetensors")[k]) for k, v in trained.items())
    assert read_manifest(out)["smoke_test"]["verdict"] == "pass"


def test_no_smoke_test_writes_a_card_without_claims(tiny_llama_dir, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    import seamharden.protect

    kept = []  # and, on a CPU, the run keeps its freed memory mapped (seamharden.cpu_memory)
    monkeypatch.setattr(seamharden.protect, "keep_freed_memory", lambda: kept.append(True) or True)
    out = tmp_path / "nocard"
    protect(str(tiny_llama_dir), out, load_recipe("tiny", [*FAST, "train.steps=1"]), smoke_test=None)
    assert kept == ([] if torch.cuda.is_available() else [True])
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == str(tiny_llama_dir) and "seamharden" in card.data.tags
    assert "No attack smoke test was run" in card.text
    assert "README.md" in read_manifest(out)["files"]


def test_settings_that_would_fail_after_training_are_refused_first(tiny_llama_dir, tmp_path):
    from seamharden.errors import UserError

    recipe = load_recipe("tiny", [*FAST, "model.lora.merge_on_save=false"])
    with pytest.raises(UserError, match="merge_on_save"):
        protect(str(tiny_llama_dir), tmp_path / "x", recipe, smoke_test=lambda *a: {})
    assert not (tmp_path / "x").exists()
    proc = _cli("protect", str(tiny_llama_dir), str(tmp_path / "y"), "--recipe", "tiny", "--push-to", "not-a-repo-id")
    assert proc.returncode == 2 and "invalid repo id" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y").exists()


def test_resume_refuses_changed_data(tiny_llama_dir, tmp_path):
    from seamharden.data import load_builtin
    from seamharden.errors import UserError

    data_file = tmp_path / "bgn.jsonl"
    rows = load_builtin("bgn")
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = load_recipe("tiny", [*FAST, "data.bgn.kind=local", f"data.bgn.path={data_file}"])
    out = tmp_path / "changed"
    protect(str(tiny_llama_dir), out, recipe, stop_after=1, smoke_test=None)
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:-5]))
    with pytest.raises(UserError, match="data changed"):
        protect(str(tiny_llama_dir), out, recipe, resume=True, smoke_test=None)


def test_sigterm_checkpoints_the_step_and_exits_143(tiny_llama_dir, tmp_path):
    import signal

    out = tmp_path / "terminated"
    proc = _signal_a_long_run(tiny_llama_dir, out, signal.SIGTERM)
    stderr = proc.stderr
    assert proc.returncode == 143, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: terminated (SIGTERM): interrupted after step") and "--resume" in last
    assert "Traceback" not in stderr
    done = len(_losses(out))
    assert (out / "checkpoints" / f"step-{done}").is_dir() and not (out / "seamharden.json").exists()


def test_a_run_that_stops_learning_exits_5_and_resumes_with_a_lower_lr(tiny_llama_dir, tmp_path):
    """Issue 17: train.lr=1e4 throws the tiny Llama to uniform logits at step 1, every gradient exactly 0 after."""
    out = tmp_path / "collapsed"
    proc = _cli("protect", str(tiny_llama_dir), str(out), "--recipe", "tiny", "train.lr=1e4", "train.steps=40",
                "--no-smoke-test")
    assert proc.returncode == 5, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training stopped learning at step 4: the combined gradient norm has been "
                           "exactly 0 for 3 steps (since step 2)")
    assert "try --resume with a lower train.lr (e.g. train.lr=1000)" in last
    assert not (out / "seamharden.json").exists() and not (out / "checkpoints").exists()
    # only train.lr may change on resume; the run starts again from step 0 (no good checkpoint was left)
    refused = _cli("protect", str(tiny_llama_dir), str(out), "--recipe", "tiny", "train.lr=1e-3", "train.steps=41",
                   "--no-smoke-test", "--resume")
    assert refused.returncode == 2 and "only train.lr may change" in refused.stderr
    resumed = _cli("protect", str(tiny_llama_dir), str(out), "--recipe", "tiny", "train.lr=1e-3", "train.steps=40",
                   "--no-smoke-test", "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 41)) and all(r["grad_norm"] > 0 for r in rows)
    assert max(r["lr"] for r in rows) == pytest.approx(1e-3)
    manifest = read_manifest(out)
    assert manifest["extra"]["lr_changes"] == [{"from_step": 0, "lr": 1e-3, "was": 1e4}]
    assert load_recipe(str(out / "recipe.yaml")).train.lr == 1e-3


def test_resume_with_a_lower_lr_continues_from_the_checkpoint(tiny_llama_dir, tmp_path):
    recipe = load_recipe("tiny", FAST)
    out = tmp_path / "lower"
    protect(str(tiny_llama_dir), out, recipe, stop_after=4, smoke_test=None)
    lower = load_recipe("tiny", [*FAST, "train.lr=1e-4"])
    protect(str(tiny_llama_dir), out, lower, resume=True, smoke_test=None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    from seamharden.train.optim import lr_factor

    assert [r["lr"] for r in rows[4:]] == pytest.approx([1e-4 * lr_factor(s, 6, 1, "cosine") for s in (4, 5)])
    assert read_manifest(out)["extra"]["lr_changes"] == [{"from_step": 4, "lr": 1e-4, "was": 3e-3}]


@pytest.mark.parametrize("kind", ["file", "under a file"])
def test_an_output_path_that_cannot_be_a_directory_fails_before_loading(tiny_llama_dir, tmp_path, monkeypatch, kind):
    import seamharden.protect as protect_module
    from seamharden.errors import UserError

    blocker = tmp_path / "taken"
    blocker.write_text("x")
    out = blocker if kind == "file" else blocker / "out"
    proc = _cli("protect", str(tiny_llama_dir), str(out), "--recipe", "tiny", *FAST)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr and str(out) in proc.stderr
    monkeypatch.setattr(protect_module, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(UserError, match="is a file|is not a directory"):
        protect(str(tiny_llama_dir), out, load_recipe("tiny", FAST), smoke_test=None)


@pytest.mark.parametrize("no_smoke_test", [False, True])
def test_d_adv_too_small_for_the_held_out_split_fails_before_loading(tiny_llama_dir, tmp_path, no_smoke_test):
    data = tmp_path / "adv.jsonl"
    data.write_text(json.dumps({"prompt": "How do I do harm?", "response": "Like this."}) + "\n")
    out = tmp_path / "small"
    args = ["protect", str(tiny_llama_dir), str(out), "--recipe", "tiny", "data.adv.kind=local",
            f"data.adv.path={data}", "data.aln.kind=local", f"data.aln.path={data}", *FAST]
    proc = _cli(*args, *(["--no-smoke-test"] if no_smoke_test else []))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "data.adv: the held-out split has 0 records" in proc.stderr and not out.exists()
    assert ("no smoke test or `seamharden verify` could ever run" in proc.stderr) == no_smoke_test


def test_default_output_dir_names_the_resolved_directory(tmp_path, monkeypatch):
    from seamharden.protect import default_output_dir

    model = tmp_path / "my-model"
    model.mkdir()
    monkeypatch.chdir(model)
    assert default_output_dir(".") == default_output_dir("./") == default_output_dir(str(model)) == \
        default_output_dir("../my-model/") == __import__("pathlib").Path("my-model-seam")
    assert str(default_output_dir("org/some-model")) == "some-model-seam"


def test_float16_on_a_cpu_is_refused_before_loading(tiny_llama_dir, tmp_path):
    proc = _cli("protect", str(tiny_llama_dir), str(tmp_path / "fp16"), "--recipe", "tiny", "model.dtype=float16",
                *FAST)
    assert proc.returncode == 2 and "model.dtype=float16 cannot train on a CPU" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "fp16").exists()


def test_the_bitsandbytes_kernels_community_warning_alone_is_silenced(caplog):
    import logging

    import seamharden.modeling  # noqa: F401  installs the filter

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "boom")
        logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
