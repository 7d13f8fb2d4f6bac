"""A whole ``protect --recipe tiny`` under ``torchrun --standalone --nproc_per_node 2`` (gloo, CPU) vs one process.

Each test launches ``torchrun ... -m seamharden protect`` as a subprocess on the tiny Llama of
tests/conftest.py, with a 30 s collective timeout (``distributed.timeout_s``), and reads back what the
run wrote: the saved safetensors, metrics.jsonl, seamharden.json and the exit codes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil  # accelerate's dependency
import pytest
from safetensors.torch import load_file

from seamharden.errors import ExitCode

pytestmark = pytest.mark.two_cores  # two busy ranks: under pytest-xdist no other test runs beside them
ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")
RUN = ["--recipe", "tiny", "seam.difference=central", "--no-smoke-test", "train.steps=4"]
TWO = ["distributed.world_size=2", "distributed.timeout_s=30"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def torchrun_protect(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    launcher = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    if launcher is None:
        pytest.skip("torchrun not installed")
    return subprocess.run([launcher, "--standalone", "--nproc_per_node", "2", "-m", "seamharden", "protect", *args],
                          cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def one_process_protect(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seamharden", "protect", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


def relative_l2(a_dir: Path, b_dir: Path) -> float:
    """||a - b|| / ||a|| over every tensor of the two saved models (same names required)."""
    a, b = load_file(a_dir / "model.safetensors"), load_file(b_dir / "model.safetensors")
    assert a.keys() == b.keys()
    diff = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a) ** 0.5
    return diff / sum(float(a[k].double().pow(2).sum()) for k in a) ** 0.5


def losses(out_dir: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss_ul"], r["loss_up"], r["loss_sd"], r["anchor_kl"], r["grad_norm"]) for r in rows]


@pytest.mark.parametrize(("extra", "tolerance"), [
    # seam.relative_step=0.01: finite differences well above fp32 rounding; measured 6.9e-8
    (["seam.relative_step=0.01"], 1e-4),
    # the default step (1e-3 of ||theta||): the estimator's rounding, amplified by AdamW's per-element
    # normalisation, moves the model by 2.2e-4; one process at 1 vs 2 threads differs by 2.1e-4 alike
    ([], 1e-3),
])
def test_protect_under_two_ranks_equals_one_process(tiny_llama_dir, tmp_path, extra, tolerance):
    single = one_process_protect(tmp_path, str(tiny_llama_dir), "one", *RUN, *extra)
    assert single.returncode == 0, single.stderr[-3000:]
    proc = torchrun_protect(tmp_path, str(tiny_llama_dir), "two", *RUN, *TWO, *extra)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one, two = tmp_path / "one", tmp_path / "two"
    assert relative_l2(one, two) <= tolerance
    assert relative_l2(one, tiny_llama_dir) > 0.01  # the runs did move the model (by 6.9e-2)
    # rank 0 alone logs: one header, one line per step, one final line; metrics.jsonl written once
    assert proc.stderr.count("hardening ") == 1 and "2 processes, FSDP2 sharding fsdp2-per-layer" in proc.stderr
    assert proc.stdout.count("hardened model written to two") == 1
    got, want = losses(two), losses(one)
    assert [row[0] for row in got] == [1, 2, 3, 4]
    # the first step sees the same weights: its losses agree to 1e-6; grad_norm is the norm of the update,
    # whose finite differences round differently (the step's update agrees to 2.5e-5, docs/distributed.md)
    assert got[0][:5] == pytest.approx(want[0][:5], rel=1e-6)
    assert got[0][5] == pytest.approx(want[0][5], rel=1e-4)
    manifest = json.loads((two / "seamharden.json").read_text())
    assert manifest["extra"]["distributed"] == {"world_size": 2, "sharding": "fsdp2-per-layer"}
    assert "distributed" not in json.loads((one / "seamharden.json").read_text())["extra"]
    assert not (two / "checkpoints").exists() and not (two / "run.json").exists()


def test_protect_with_the_exact_estimator_under_two_ranks_equals_one_process(tiny_llama_dir, tmp_path):
    """The tiny recipe unchanged (``seam.difference: hvp``, the default ``hvp_graph: reuse``, which runs
    as ``recompute`` on shards): no finite difference amplifies the ranks' other summation order."""
    exact = [a for a in RUN if a != "seam.difference=central"]
    single = one_process_protect(tmp_path, str(tiny_llama_dir), "one", *exact)
    assert single.returncode == 0, single.stderr[-3000:]
    proc = torchrun_protect(tmp_path, str(tiny_llama_dir), "two", *exact, *TWO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one, two = tmp_path / "one", tmp_path / "two"
    moved = relative_l2(one, two)
    print(f"exact hvp, 2 ranks vs one process: relative L2 of the saved models {moved:.3g}")
    assert moved <= 1e-4  # the acceptance
    assert relative_l2(one, tiny_llama_dir) > 0.01
    assert proc.stderr.count("L_sd estimator hvp") == 1  # rank 0's header: the recipe's estimator, unchanged
    assert "2 processes, FSDP2 sharding fsdp2-per-layer" in proc.stderr
    got, want = losses(two), losses(one)
    assert [row[0] for row in got] == [1, 2, 3, 4]
    assert got[0] == pytest.approx(want[0], rel=1e-6)  # grad_norm too: the update is exact on shards


def test_stop_and_resume_under_two_ranks_gives_the_same_losses_and_model(tiny_llama_dir, tmp_path):
    full = torchrun_protect(tmp_path, str(tiny_llama_dir), "full", *RUN, *TWO)
    assert full.returncode == 0, full.stderr[-4000:]
    first = torchrun_protect(tmp_path, str(tiny_llama_dir), "split", *RUN, *TWO, "--stop-after", "2")
    assert first.returncode == 0, first.stderr[-4000:]
    checkpoint = tmp_path / "split" / "checkpoints" / "step-2"
    assert {p.name for p in checkpoint.iterdir()} == {"sharded", "state.pt", "rng-0.pt", "rng-1.pt"}
    second = torchrun_protect(tmp_path, str(tiny_llama_dir), "split", *RUN, *TWO, "--resume")
    assert second.returncode == 0, second.stderr[-4000:]
    assert losses(tmp_path / "split") == losses(tmp_path / "full")
    assert relative_l2(tmp_path / "full", tmp_path / "split") == 0.0

    # SIGKILL to every process (launcher and both ranks) right after the periodic checkpoint of step 2
    killed = tmp_path / "killed"
    periodic = ["train.checkpoint_every=2"]
    launcher = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    run = subprocess.Popen([launcher, "--standalone", "--nproc_per_node", "2", "-m", "seamharden", "protect",
                            str(tiny_llama_dir), "killed", *RUN, *TWO, *periodic], cwd=tmp_path, env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "step-2" / "state.pt").exists() and run.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    family = [*psutil.Process(run.pid).children(recursive=True), psutil.Process(run.pid)]  # ranks: own sessions
    for proc in family:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=30)
    run.wait()
    assert not (killed / "seamharden.json").exists(), "the run finished before the kill: the test proved nothing"
    resumed = torchrun_protect(tmp_path, str(tiny_llama_dir), "killed", *RUN, *TWO, *periodic, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert losses(killed) == losses(tmp_path / "full")
    assert relative_l2(tmp_path / "full", killed) == 0.0


def test_resume_on_another_world_size_is_refused(tiny_llama_dir, tmp_path):
    first = torchrun_protect(tmp_path, str(tiny_llama_dir), "split", *RUN, *TWO, "--stop-after", "1")
    assert first.returncode == 0, first.stderr[-4000:]
    again = one_process_protect(tmp_path, str(tiny_llama_dir), "split", *RUN, "--resume")
    assert again.returncode != 0
    assert "distributed.world_size" in again.stderr.strip().splitlines()[-1]


def _rank_exit_codes(proc: subprocess.CompletedProcess) -> list[int]:
    """The exit codes torchrun's failure summary lists (the first failure; the others it then stopped)."""
    return [int(code) for code in re.findall(r"exitcode\s*:\s*(-?\d+)", proc.stderr)]


def test_world_size_must_match_the_launch(tiny_llama_dir, tmp_path):
    proc = torchrun_protect(tmp_path, str(tiny_llama_dir), "out", *RUN, timeout=120)  # recipe: world_size 1
    assert proc.returncode != 0
    message = ("error: torchrun started 2 processes but the recipe's distributed.world_size is 1; "
               "pass distributed.world_size=2 or launch --nproc_per_node 1")
    assert message in proc.stderr
    assert int(ExitCode.USAGE) in _rank_exit_codes(proc)  # a UserError: one line, no traceback of ours
    assert str(ROOT / "seamharden") not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_smoke_test_is_refused_under_torchrun(tiny_llama_dir, tmp_path):
    args = [a for a in RUN if a != "--no-smoke-test"]
    proc = torchrun_protect(tmp_path, str(tiny_llama_dir), "out", *args, *TWO, timeout=120)
    assert proc.returncode != 0
    assert "error: the smoke test does not run under torchrun yet" in proc.stderr
    assert not (tmp_path / "out").exists()


CONTROLLER = ["utility.check_every=2", "utility.val_samples=8", "utility.tolerance=0.0", "seam.relative_step=0.01"]


def _checks(out_dir: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["val_metric"], r["within_budget"], r["anchor_weight"]) for r in rows if "val_metric" in r]


@pytest.mark.slow
def test_the_utility_controller_under_two_ranks_equals_one_process_and_resumes(tiny_llama_dir, tmp_path):
    single = one_process_protect(tmp_path, str(tiny_llama_dir), "one", *RUN, *CONTROLLER)
    assert single.returncode == 0, single.stderr[-3000:]
    proc = torchrun_protect(tmp_path, str(tiny_llama_dir), "two", *RUN, *TWO, *CONTROLLER)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one, two, split = tmp_path / "one", tmp_path / "two", tmp_path / "split"
    got, want = _checks(two), _checks(one)
    assert [row[0] for row in got] == [2, 4]
    assert [row[2:] for row in got] == [row[2:] for row in want]  # same budget decisions, same anchor weights
    assert [row[1] for row in got] == pytest.approx([row[1] for row in want], rel=1e-5)
    kept = [json.loads((d / "seamharden.json").read_text())["extra"]["kept_step"] for d in (one, two)]
    assert kept[0] == kept[1]
    assert relative_l2(one, two) <= 1e-4  # the kept copy, read back from its shards, is the one process's
    assert not (two / "kept").exists()

    first = torchrun_protect(tmp_path, str(tiny_llama_dir), "split", *RUN, *TWO, *CONTROLLER, "--stop-after", "3")
    assert first.returncode == 0, first.stderr[-4000:]
    copies = sorted(p.name for p in (split / "kept").iterdir())
    assert copies and all((split / "kept" / name / "sharded").is_dir() for name in copies)
    second = torchrun_protect(tmp_path, str(tiny_llama_dir), "split", *RUN, *TWO, *CONTROLLER, "--resume")
    assert second.returncode == 0, second.stderr[-4000:]
    assert _checks(split) == _checks(two)
    assert relative_l2(two, split) == 0.0
