"""``benchmarks/gpu_acceptance.sh --cpu`` runs end to end on a tiny shape and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_acceptance.sh"


def test_cpu_mode_writes_one_json_with_every_check(tmp_path):
    out = tmp_path / "acceptance.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu", str(out)], env=env, capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "cpu" and report["fidelity_passed"] is True and report["step_cost_errors"] == 0
    assert {(r["weights"], r["dtype"]) for r in report["fidelity"]} == {
        ("trained", "bf16"), ("trained", "fp32"), ("random", "bf16"), ("random", "fp32")}
    for row in report["fidelity"]:
        assert row["min_cosine"] >= (0.95 if row["dtype"] == "bf16" else 0.999)
    assert [r["difference"] for r in report["step_cost"]] == ["hvp", "central"]
    for row in report["step_cost"]:
        assert row["gradient_checkpointing"] is True and row["time_ratio"] > 1 and row["seam"]["peak_gib"] > 0


def test_gpu_mode_refuses_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "x.json")], env=env, capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 2 and "needs a CUDA device" in proc.stderr
    assert not (tmp_path / "x.json").exists()
