"""``benchmarks/mc_items.py``: the suite's 16 MC items and the other 29, for models and saved weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from seamharden.attack.scorers import mc_accuracy
from seamharden.data import builtin_mc, encode_choices, pad_id
from seamharden.train.checkpoint import trainable_state

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mc_items.py"


def test_scores_equal_the_suite_scorer_and_weights_files_are_loaded(tiny_llama_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("mc_items", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    items = [(encode_choices(tokenizer, it["question"], it["choices"], "plain", 64), int(it["answer"]))
             for it in builtin_mc()]
    with torch.no_grad():
        expected = mc_accuracy(model, items[:16], pad_id(tokenizer)), mc_accuracy(model, items[16:], pad_id(tokenizer))
        save_file(trainable_state(model), tmp_path / "same.safetensors")
        for p in model.parameters():
            p.mul_(-1.0)  # another model: its scores differ
        save_file(trainable_state(model), tmp_path / "flipped.safetensors")
        flipped = mc_accuracy(model, items[:16], pad_id(tokenizer)), mc_accuracy(model, items[16:], pad_id(tokenizer))
    assert flipped != expected
    rows = script.score_items([str(tiny_llama_dir)], [str(tmp_path / "flipped.safetensors"),
                                                      str(tmp_path / "same.safetensors")], "plain")
    got = [(r["suite_items"], r["other_items"]) for r in rows]
    assert got == [expected, flipped, expected]  # the dir, then each file loaded in turn
