"""lm-evaluation-harness benchmarks on an in-memory tiny model, over a local task: no download."""

import json

import pytest
import torch

pytest.importorskip("lm_eval")

from seamharden.attack.benchmarks import BUILTIN_TASK, BenchmarkSuite, _parse, mc_task_yaml, task_manager  # noqa: E402
from seamharden.attack.evalset import EvalSettings  # noqa: E402
from seamharden.errors import UserError  # noqa: E402
from seamharden.tiny import build_tiny_tokenizer, build_trained_tiny_model  # noqa: E402

ITEMS = [
    {"question": "What is the capital of France?", "choices": ["Paris", "Rome", "Lima"], "answer": 0},
    {"question": "What is two plus three?", "choices": ["four", "five", "six"], "answer": 1},
    {"question": "What does the cat see?", "choices": ["the book", "a red ball", "the map"], "answer": 1},
    {"question": "Translate good morning into French.", "choices": ["hola", "ciao", "bonjour"], "answer": 2},
    {"question": "Who bakes bread?", "choices": ["the old man", "a bird", "the teacher"], "answer": 0},
]


@pytest.fixture(scope="module")
def tiny():
    tok = build_tiny_tokenizer(400)
    model = build_trained_tiny_model("llama", seed=0, tokenizer=tok, steps=40)
    return model, tok


@pytest.fixture
def task_dir(tmp_path):
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    (tmp_path / "tiny_local_mc.yaml").write_text(mc_task_yaml("tiny_local_mc", data))
    return tmp_path


def _own_accuracy(model, tok, items) -> float:
    """Multiple-choice accuracy as lm-eval defines it: argmax of log p(" " + choice | context), summed."""
    correct = 0
    with torch.no_grad():
        for item in items:
            context = f"Question: {item['question']}\nAnswer:"
            n = len(tok(context)["input_ids"])
            scores = []
            for choice in item["choices"]:
                ids = tok(context + " " + choice)["input_ids"]
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
                scores.append(sum(float(logp[i - 1, ids[i]]) for i in range(n, len(ids))))
            correct += int(max(range(len(scores)), key=scores.__getitem__) == item["answer"])
    return correct / len(items)


def test_local_task_accuracy_equals_own_computation(tiny, task_dir):
    model, tok = tiny
    model.train()
    bench = BenchmarkSuite.from_settings(EvalSettings(benchmarks=("tiny_local_mc",), benchmark_include=str(task_dir),
                                                      batch_size=4))
    rows = bench.run(model, tok)
    assert model.training  # mode restored
    model.eval()
    expected = _own_accuracy(model, tok, ITEMS)
    assert [(t, m) for t, m, _, _ in rows] == [("tiny_local_mc", "acc")]
    assert rows[0][2] == pytest.approx(expected, abs=1e-9)
    assert rows[0][3] is not None and rows[0][3] > 0  # stderr of a mean, 5 items
    scores = bench.scores(rows, "hardened", "full/adamw lr=1e-04 n=8", 3)
    assert scores[0].model == "hardened" and scores[0].step == 3 and scores[0].value == rows[0][2]


def test_limit_and_builtin_task(tiny):
    model, tok = tiny
    bench = BenchmarkSuite.from_settings(EvalSettings(benchmarks=(BUILTIN_TASK,), benchmark_limit=4))
    (task, metric, value, _), = bench.run(model, tok)
    assert (task, metric) == (BUILTIN_TASK, "acc") and value in {0, 0.25, 0.5, 0.75, 1}


def test_no_benchmarks_and_bad_names(task_dir):
    assert BenchmarkSuite.from_settings(EvalSettings()) is None
    with pytest.raises(UserError, match="not a directory"):
        task_manager(["tiny_local_mc"], str(task_dir / "missing"))


def test_parse_keeps_requested_numeric_metrics():
    results = {"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": 0.1, "exact_match,flex": 1.0,
                     "exact_match_stderr,flex": "N/A"},
               "t_sub": {"acc,none": 0.3}}
    assert _parse(results, ["t"]) == [("t", "acc", 0.5, 0.1), ("t", "exact_match/flex", 1.0, None)]


def test_recipe_without_the_harness_fails_at_load(monkeypatch):
    import importlib.util

    from seamharden.recipe.loading import load_recipe

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    with pytest.raises(UserError, match=r"seamharden\[eval\]"):
        load_recipe("tiny", ["attack.benchmarks=[arc_easy]"])
    assert load_recipe("tiny").attack.benchmarks == []


def test_benchmarks_under_a_sweep_fail_at_load():
    from seamharden.recipe.loading import load_recipe

    with pytest.raises(UserError, match=r"not scored under attack.budget=sweep"):
        load_recipe("tiny", ["attack.benchmarks=[seamharden_mc]", "attack.budget=sweep"])
