"""``benchmarks/smollm2_search.py`` on the tiny Llama: a split run (--stop-after, --resume) writes lines, table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "smollm2_search.py"
SMALL = ["train.steps=4", "seam.beta_delay=2", "data.max_length=32", "utility.check_every=2", "utility.val_samples=4",
         "attack.eval_samples=4", "attack.eval_every=2", "attack.generate_prompts=2", "attack.max_new_tokens=4",
         *(f"attack.attacks.{i}.steps=2" for i in range(3))]


@pytest.mark.slow
def test_split_run_writes_one_line_per_call_and_the_table(tiny_llama_dir, tmp_path):
    common = [sys.executable, str(SCRIPT), str(tiny_llama_dir), *SMALL, "--name", "r1", "--out-root", str(tmp_path),
              "--results", str(tmp_path / "s.jsonl"), "--table", str(tmp_path / "s.md"), "--machine", "test"]
    first = subprocess.run([*common, "--stop-after", "2"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run([*common, "--resume"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [(r["finished"], r["steps_done"], r["steps_this_call"]) for r in rows] == [(False, 2, 2), (True, 4, 2)]
    assert rows[0]["step_seconds_median"] > 0 and "attacks" not in rows[0]
    done = rows[1]
    assert done["verdict"] in {"pass", "fail", "inconclusive"} and len(done["attacks"]) == 3
    for attack in done["attacks"]:
        for kind in ("base", "hardened"):
            assert attack[kind]["harmful_loss_after"] > 0 and attack[kind]["benign_loss_before"] > 0
    table = (tmp_path / "s.md").read_text().splitlines()
    assert len(table) == 2 + 1 + 3 and all(line.startswith("| r1 |") for line in table[2:])
    assert done["figures"]["utility_drop"] is not None and not done["base_results_reused"]

    # a screening run trained without the smoke test, then attacked alone with r1's base runs reused
    r2 = [c if c != "r1" else "r2" for c in common]
    assert subprocess.run([*r2, "--no-smoke-test"], capture_output=True, text=True, timeout=600).returncode == 0
    third = subprocess.run([*r2, "--smoke-only", "--base-results", str(tmp_path / "r1")], capture_output=True,
                           text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    smoke = rows[-1]
    assert smoke["smoke_only"] and smoke["base_results_reused"] and smoke["steps_done"] == 4
    assert [a["base"] for a in smoke["attacks"]] == [a["base"] for a in done["attacks"]]
    assert all(a["hardened"]["points"][0][0] == 0 for a in smoke["attacks"])
