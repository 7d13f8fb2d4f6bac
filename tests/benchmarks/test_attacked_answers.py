"""``benchmarks/attacked_answers.py``: word F1 exact, and a shrunk run on the tiny Llama reads back."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "attacked_answers.py"
SMALL = ["attack.budget=custom", "attack.attacks=[{lr: 1.0e-2, samples: 16, steps: 4}]", "attack.eval_samples=6"]


def _module():
    spec = importlib.util.spec_from_file_location("attacked_answers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_word_f1_is_squad_token_f1():
    f1 = _module().word_f1
    assert f1("Return the sum.", "return the SUM") == 1.0
    assert f1("the cat", "the dog sat") == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert f1("", "anything") == 0.0 and f1("x y", "z") == 0.0


def test_answers_before_and_during_the_attack_read_back(tiny_llama_dir, tmp_path):
    out = tmp_path / "answers.jsonl"
    args = [sys.executable, str(SCRIPT), str(tiny_llama_dir), "--recipe", "tiny", "--at", "2", "4",
            "--prompts", "3", "--max-new-tokens", "6", "--out", str(out)]
    proc = subprocess.run([*args, *(f"--set={o}" for o in SMALL)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["step"], r["stream"]) for r in rows] == [(s, k) for s in (0, 2, 4) for k in ("bgn", "general")]
    assert rows[0]["attack"] == "none" and rows[2]["attack"].startswith("full/adamw lr=1e-02")
    for r in rows:
        assert len(r["answers"]) == (3 if r["stream"] == "bgn" else len(_module().GENERAL))
        assert 0.0 <= r["coherent"] <= 1.0
        assert 0.0 <= r["f1" if r["stream"] == "bgn" else "right"] <= 1.0
    assert rows[2]["answers"] != rows[4]["answers"] or rows[0]["answers"] != rows[4]["answers"]  # weights moved
    assert out.with_suffix(".md").read_text().count("\n") == 2 + 3
    for r in rows[0::2]:  # the bgn rows carry the benign loss profile
        b = r["benign_loss"]
        assert b["median"] <= max(b["first"], b["inner"], b["last"]) and b["mean"] > 0


def test_token_profile_mean_is_the_suites_benign_loss(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seamharden.attack.scorers import response_ce
    from seamharden.data import encode_example, pad_id

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    records = [("What is two plus two?", "Four, the sum of two and two."), ("Name a colour.", "Blue is one.")]
    examples = [encode_example(tokenizer, p, r, "plain", 64) for p, r in records]
    profile = _module().token_profile(model, examples)
    with torch.no_grad():
        suite = response_ce(model, examples, pad_id(tokenizer))
    assert profile["mean"] == pytest.approx(suite, rel=1e-5)
    counts = [sum(label != -100 for label in ex["labels"][1:]) for ex in examples]
    weighted = (profile["first"] * 2 + profile["last"] * 2 + profile["inner"] * (sum(counts) - 4)) / sum(counts)
    assert profile["mean"] == pytest.approx(weighted, rel=1e-5)
