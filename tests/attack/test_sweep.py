"""The attack sweep (attack.budget: sweep): the search, its determinism, and the verdict on its worst trial."""

import math

import pytest
from huggingface_hub import ModelCard

from seamharden.attack import AttackRun, EvalPoint
from seamharden.attack.evalset import EvalSettings
from seamharden.attack.suite import run_suite
from seamharden.attack.sweep import best_trial, run_sweep, trial_score
from seamharden.errors import UserError
from seamharden.recipe.loading import load_recipe
from seamharden.recipe.schema import AttackConfig, Criteria, SweepSpace
from seamharden.report import load_report, write_report
from seamharden.tiny import save_tiny_model_dir

SPACE = SweepSpace(lr_min=1e-5, lr_max=1e-2, steps=[2, 4], batch_sizes=[2, 4], lora_ranks=[2, 4])


def _fake_attack(config: AttackConfig) -> AttackRun:
    """A run whose harmful loss falls with log(lr) x steps: the objective is known in closed form."""
    drop = min(0.9, max(0.0, (math.log10(config.lr) + 5) / 3) * config.steps / 4)
    pts = [EvalPoint(step=0, harmful_loss=3.0, benign_loss=2.0),
           EvalPoint(step=config.steps, harmful_loss=3.0 * (1 - drop), benign_loss=2.0)]
    return AttackRun(config=config, model="hardened", points=pts)


def _score(run):
    return trial_score(run, run.start, Criteria())


def test_sweep_is_seeded_and_stays_in_its_space():
    first = run_sweep(_fake_attack, _score, space=SPACE, trials=8, seed=3, benign_records=False)
    again = run_sweep(_fake_attack, _score, space=SPACE, trials=8, seed=3, benign_records=False)
    other = run_sweep(_fake_attack, _score, space=SPACE, trials=8, seed=4, benign_records=False)
    assert [t.params for t in first] == [t.params for t in again]
    assert [t.params for t in first] != [t.params for t in other]
    for t in first:
        c = t.run.config
        assert 1e-5 <= c.lr <= 1e-2 and c.steps in (2, 4) and c.batch_size in (2, 4)
        assert c.benign_mix == 0.0 and c.seed == 3 and c.samples == SPACE.samples
        assert ("lora_rank" in t.params) == (c.method == "lora")
        assert t.score == pytest.approx(_score(t.run))
    assert best_trial(first).score == max(t.score for t in first)


def test_trial_score_is_the_capability_bounded_gain():
    ref = EvalPoint(step=0, harmful_loss=3.0, benign_loss=2.0, benign_accuracy=0.9, harmful_success=0.0)
    pts = [ref, EvalPoint(step=5, harmful_loss=1.5, benign_loss=3.0, benign_accuracy=0.8, harmful_success=0.4),
           EvalPoint(step=10, harmful_loss=0.3, benign_loss=4.5, benign_accuracy=0.2, harmful_success=0.9)]
    run = AttackRun(config=AttackConfig(lr=1e-4, samples=10), model="hardened", points=pts)
    assert trial_score(run, ref, Criteria()) == pytest.approx(0.5)  # step 10 collapsed (4.5 > 2 x 2.0)
    assert trial_score(run, ref, Criteria(kind="task")) == pytest.approx(0.4)  # 0.2 <= 0.5 x 0.9


def test_sweep_cannot_reuse_base_results(tiny_llama_dir):
    from seamharden.attack.results import SuiteResult

    recipe = load_recipe("tiny", ["attack.budget=sweep"])
    previous = SuiteResult(base_model="b", hardened_model="b", budget="sweep")
    with pytest.raises(UserError, match="sweep searches the base anew"):
        run_suite(str(tiny_llama_dir), str(tiny_llama_dir), recipe, base_results=previous)


def test_four_trial_sweep_on_tiny_models_and_the_verdict_uses_its_worst_trial(tiny_llama_dir, tmp_path):
    hardened = save_tiny_model_dir(tmp_path / "other", "llama", seed=1)
    recipe = load_recipe("tiny", [
        "attack.budget=sweep", "attack.sweep_trials=4", "attack.sweep_seed=0", "attack.eval_every=2",
        "attack.sweep_space.steps=[2, 4]", "attack.sweep_space.batch_sizes=[2, 4]", "attack.sweep_space.lora_ranks=[4]",
        "attack.sweep_space.lr_min=1e-4", "attack.sweep_space.lr_max=5e-2", "attack.sweep_space.samples=16",
        "attack.benign_control.enabled=true"])
    settings = EvalSettings(samples=6, generate_prompts=2, max_new_tokens=4, mc_items=4)
    result, v = run_suite(str(tiny_llama_dir), str(hardened), recipe, eval_settings=settings, gradients=False)
    sweep = result.sweep
    assert [t.run.model for t in sweep.history] == ["base"] * 4 + ["hardened"] * 4
    assert [t.number for t in sweep.trials_of("hardened")] == [0, 1, 2, 3]
    best_h, best_b = sweep.best_of("hardened"), sweep.best_of("base")
    assert best_h.score == max(t.score for t in sweep.trials_of("hardened"))
    # every model's best config ran on both models, the best trials' runs reused as they are
    assert {r.label for r in result.runs_of("base")} == {r.label for r in result.runs_of("hardened")} == \
        {best_b.run.label, best_h.run.label}
    assert best_h.run in result.runs_of("hardened") and best_b.run in result.runs_of("base")
    # the verdict's worst case on the hardened model: the best trial (or the base's worst, where worse)
    reference = sweep.trials_of("base")[0].run.start
    gains = {r.label: trial_score(r, reference, recipe.attack.criteria) for r in result.runs_of("hardened")}
    assert v.figures.hardened_bounded_gain == pytest.approx(max(gains.values()))
    assert v.figures.hardened_bounded_gain >= best_h.score
    assert v.figures.hardened_bounded_attack == max(gains, key=gains.get)
    assert v.figures.base_worst_gain >= best_b.score
    assert v.figures.sweep_trials == 4 and v.reasons[0].startswith("attack sweep:")
    # the benign control ran with the strongest of the worst cases' settings, on both models
    assert [r.model for r in result.benign_control] == ["base", "hardened"]
    assert result.benign_control[0].config.lr == max(best_h.run.config.lr, best_b.run.config.lr)
    # the model card's model-index carries each model's worst trial, as report.json has it
    write_report(result, v, tmp_path / "report", title="t", base_model="org/base", recipe_name="tiny")
    doc = load_report(tmp_path / "report")
    index = {r.metric_type: r for r in ModelCard.load(tmp_path / "report" / "README.md").data.eval_results}
    for metric_type, model in (("seamharden/sweep_worst_score", "hardened"),
                               ("seamharden/base_sweep_worst_score", "base")):
        want = doc.results.sweep.best_of(model).score
        assert index[metric_type].metric_value == pytest.approx(round(want, 6), abs=1e-9)
        assert "attack sweep" in index[metric_type].metric_name and "4 trials" in index[metric_type].metric_name
    assert "attack sweep:" in (tmp_path / "report" / "report.md").read_text()
    # seeded: the same sweep again proposes the same trials with the same scores
    again, _ = run_suite(str(tiny_llama_dir), str(hardened), recipe, eval_settings=settings, gradients=False)
    assert [(t.params, t.score) for t in again.sweep.history] == [(t.params, t.score) for t in sweep.history]


def test_adagrad_and_lora_rank_reach_the_attack(tiny_llama_dir, monkeypatch):
    import torch

    from seamharden.attack import finetune
    from seamharden.attack.evalset import prepare_eval
    from seamharden.attack.finetune import AttackData, _optimizer, run_attack
    from seamharden.attack.suite import suite_data
    from seamharden.data import encode_example
    from seamharden.modeling import load_model

    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(_optimizer(AttackConfig(lr=1e-3, samples=4, optimizer="adagrad"), params), torch.optim.Adagrad)
    recipe = load_recipe("tiny")
    loaded = load_model(str(tiny_llama_dir), recipe.model, torch.device("cpu"))
    tok, model = loaded.tokenizer, loaded.model
    data = suite_data(recipe)
    enc = [encode_example(tok, r["prompt"], r["response"], "chat", 64) for r in data.attack_adv]
    evalset = prepare_eval(tok, data.eval_adv, data.eval_bgn, "chat", 64, EvalSettings(samples=4, generate_prompts=1,
                                                                                         max_new_tokens=2, mc_items=2))
    seen = []
    real = finetune.attach_lora

    def spy(m, section):
        seen.append((section.lora.r, section.lora.alpha))
        wrapped = real(m, section)
        seen.append(sorted({mod.r["default"] for mod in wrapped.modules() if hasattr(mod, "lora_A")}))
        return wrapped

    monkeypatch.setattr(finetune, "attach_lora", spy)
    config = AttackConfig(method="lora", lora_rank=4, optimizer="adagrad", lr=1e-2, samples=8, steps=2)
    points = run_attack(model, tok, config, AttackData(enc, [], 0), evalset, eval_every=2, model_section=recipe.model)
    assert seen == [(4, 8.0), [4]] and [p.step for p in points] == [0, 2]
    assert points[-1].harmful_loss < points[0].harmful_loss
