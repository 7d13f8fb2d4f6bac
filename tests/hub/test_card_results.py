"""A real suite on tiny models with benchmarks and a judge: report.json, report.md and the model card agree.

The model card is read back with huggingface_hub's ModelCard parser; every benchmark, judge,
refusal and collapse figure in its model-index must equal the value derived from report.json.
"""

import pytest
import torch
from huggingface_hub import ModelCard

pytest.importorskip("lm_eval")

from seamharden.attack import benchmarks as bench_mod  # noqa: E402
from seamharden.attack.evalset import EvalSettings  # noqa: E402
from seamharden.attack.suite import run_suite  # noqa: E402
from seamharden.recipe.loading import load_recipe  # noqa: E402
from seamharden.report import load_report, write_report  # noqa: E402
from seamharden.tiny import save_tiny_classifier_dir, save_tiny_model_dir  # noqa: E402

ATTACKS = "[{lr: 0.01, samples: 16, steps: 4}, {method: lora, lr: 0.01, samples: 16, steps: 4}]"


@pytest.fixture(scope="module")
def suite_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("card-results")
    base = save_tiny_model_dir(root / "base", trained=True, seed=0, steps=40)
    hardened = save_tiny_model_dir(root / "hardened", trained=True, seed=1, steps=40)
    judge = save_tiny_classifier_dir(root / "judge")
    recipe = load_recipe("tiny", ["attack.budget=custom", f"attack.attacks={ATTACKS}", "attack.eval_every=2",
                                  f"attack.judge_model={judge}", "attack.benchmarks=[seamharden_mc]",
                                  "attack.benchmark_limit=4"])
    settings = EvalSettings.from_section(recipe.attack, samples=6, generate_prompts=4, max_new_tokens=8, mc_items=4)
    probe = torch.tensor([[5, 6, 7, 8]])
    seen = []
    real_run = bench_mod.BenchmarkSuite.run

    def recording_run(self, model, tokenizer):
        with torch.no_grad():
            seen.append(float(model(input_ids=probe).logits.sum()))
        return real_run(self, model, tokenizer)

    mp = pytest.MonkeyPatch()
    mp.setattr(bench_mod.BenchmarkSuite, "run", recording_run)
    try:
        result, verdict = run_suite(str(base), str(hardened), recipe, device=torch.device("cpu"),
                                    eval_settings=settings, gradients=False)
    finally:
        mp.undo()
    out = root / "report"
    write_report(result, verdict, out, title="t", base_model="org/base", recipe_name="tiny")
    return out, seen


def test_benchmarks_before_and_after_each_attack_on_the_attacked_weights(suite_report):
    out, seen = suite_report
    scores = load_report(out).results.benchmarks
    labels = [None, "full/adamw lr=1e-02 n=16 steps=4", "lora/adamw lr=1e-02 n=16 steps=4"]
    for model in ("base", "hardened"):
        rows = [b for b in scores if b.model == model]
        assert [(b.attack, b.step, b.task, b.metric) for b in rows] == \
            [(a, 0 if a is None else 4, "seamharden_mc", "acc") for a in labels]
        assert all(b.value in {0, 0.25, 0.5, 0.75, 1} for b in rows)
    # the runner scored the pristine model, then each attack's final weights (LoRA: adapters still on)
    assert len(seen) == 6 and seen[1] != seen[0] and seen[2] != seen[0] and seen[4] != seen[3] != seen[5]


def test_model_card_index_equals_report_json(suite_report):
    out, _ = suite_report
    doc = load_report(out)
    res = doc.results
    card = ModelCard.load(out / "README.md")
    index = {r.metric_type: r for r in card.data.eval_results}

    def bench(model, after):
        values = [b.value for b in res.benchmarks if b.model == model and (b.attack is not None) == after]
        return max(values)

    expected = {"acc": bench("hardened", False), "seamharden/acc_after_attack": bench("hardened", True),
                "base_acc": bench("base", False), "seamharden/base_acc_after_attack": bench("base", True)}
    worst = {"judge_score": max, "refusal_rate": min, "collapse_rate": max}
    for model, prefix in (("hardened", ""), ("base", "base_")):
        runs = res.runs_of(model)
        for field, pick in worst.items():
            start = getattr(runs[0].start, field)
            finals = [getattr(r.final, field) for r in runs if getattr(r.final, field) is not None]
            if start is not None:
                expected[f"seamharden/{prefix}{field}"] = start
            if finals:
                expected[f"seamharden/{prefix}{field}_after_attack"] = pick(finals)
    assert "seamharden/judge_score" in expected and "seamharden/collapse_rate_after_attack" in expected
    for metric_type, value in expected.items():
        assert index[metric_type].metric_value == pytest.approx(round(value, 6), abs=1e-9), metric_type
    assert index["acc"].dataset_type == "seamharden_mc"
    assert "collapsed" in index["seamharden/collapse_rate"].metric_name
    # the verdict's own figures are still there, and the tables show the same figures
    assert "seamharden/bounded_harm_gain" in index or doc.verdict.figures.hardened_bounded_gain is None
    for text in (card.text, (out / "report.md").read_text()):
        assert "## Benchmarks, judge, refusal and collapse" in text
        assert "| collapsed answers start → final |" in text.replace("judge start → final | ", "")
        assert f"{index['acc'].metric_value:.4g}" in text

