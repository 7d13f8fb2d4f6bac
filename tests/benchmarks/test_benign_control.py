"""``benchmarks/benign_control.py`` on the tiny Llama: fine-tuning on held-out benign records lowers their loss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "benign_control.py"
SMALL = ["attack.budget=custom", "attack.attacks=[{lr: 1.0e-2, samples: 16, steps: 6}]", "attack.eval_every=3",
         "attack.eval_samples=6"]


def test_benign_fine_tuning_learns_and_the_table_reads_back(tiny_llama_dir, tmp_path):
    out = tmp_path / "control.jsonl"
    args = [sys.executable, str(SCRIPT), str(tiny_llama_dir), "--recipe", "tiny", "--out", str(out)]
    proc = subprocess.run([*args, *(f"--set={o}" for o in SMALL)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert [step for step, _ in row["curve"]] == [0, 3, 6]
    assert row["learns"] and row["final"] < 0.9 * row["start"] and not row["collapses"]
    assert row["reference"] == row["start"]
    assert "| yes | no |" in out.with_suffix(".md").read_text()

