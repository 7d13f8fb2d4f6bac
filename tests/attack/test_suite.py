"""The attack runner on tiny models: data splits, the attack itself, the suite and its verdict."""

import pytest
import torch

from seamharden.attack import AttackRun, EvalPoint, attack_label
from seamharden.attack.evalset import EvalSettings, prepare_eval
from seamharden.attack.finetune import (
    ATTACK_DEFAULTS,
    AttackData,
    _optimizer,
    _schedule,
    attack_batches,
    attack_steps,
    run_attack,
)
from seamharden.attack.gradients import project
from seamharden.attack.suite import SuiteData, run_attacks, run_suite, suite_data
from seamharden.data import encode_example, load_builtin, split_heldout
from seamharden.modeling import load_model
from seamharden.recipe.loading import load_recipe
from seamharden.recipe.schema import AttackConfig

SMALL_EVAL = EvalSettings(samples=6, generate_prompts=2, max_new_tokens=4, mc_items=4)



def _recipe(lr=1e-2, steps=10, extra=()):
    return load_recipe("tiny", ["attack.budget=custom", f"attack.attacks=[{{lr: {lr}, samples: 16, steps: {steps}}}]",
                                "attack.eval_every=5", *extra])


def test_suite_data_is_held_out_and_deterministic():
    recipe = load_recipe("tiny")
    data, again = suite_data(recipe), suite_data(recipe)
    assert data == again
    train, _ = split_heldout(load_builtin("adv"), recipe.data.heldout_fraction, recipe.train.seed)
    trained = {r["prompt"] for r in train}
    attack, evaluation = {r["prompt"] for r in data.attack_adv}, {r["prompt"] for r in data.eval_adv}
    assert attack and evaluation and not attack & evaluation
    assert not (attack | evaluation) & trained


def test_attack_batches_mix_and_steps():
    config = AttackConfig(lr=1e-3, samples=10, batch_size=4, benign_mix=0.5)
    adv = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}] * 3
    bgn = [{"input_ids": [4, 5], "labels": [-100, 5]}] * 2
    batch = next(attack_batches(config, AttackData(adv, bgn, 0)))
    assert batch["input_ids"].shape == (4, 3)
    assert (batch["input_ids"][:, 0] == 4).sum() == 2
    assert attack_steps(config) == 5
    assert attack_steps(config.model_copy(update={"steps": 7})) == 7


def test_attack_lowers_harmful_loss(tiny_llama_dir):
    seen = []
    result = run_attacks(str(tiny_llama_dir), _recipe(), eval_settings=SMALL_EVAL, gradients=False,
                         progress=lambda d, done, total: seen.append((done, total, d)))
    (run,) = result.runs
    assert [p.step for p in run.points] == [0, 5, 10]
    assert run.final.harmful_loss < 0.85 * run.start.harmful_loss
    assert seen[-1][:2] == (10, 10)
    # the live view (issue 17): attack i of n, the step, and the last evaluation's losses
    described = {done: d for done, _, d in seen}
    assert "attack 1 of 1" in described[3] and "step 3/10" in described[3]
    assert f"harmful {run.points[0].harmful_loss:.3g} benign {run.points[0].benign_loss:.3g} (step 0)" in described[3]
    assert f"harmful {run.points[1].harmful_loss:.3g} benign {run.points[1].benign_loss:.3g} (step 5)" in described[5]


def test_lora_attack_leaves_base_weights(tiny_llama_dir):
    recipe = _recipe()
    loaded = load_model(str(tiny_llama_dir), recipe.model, torch.device("cpu"))
    tok, model = loaded.tokenizer, loaded.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = suite_data(recipe)
    enc = [encode_example(tok, r["prompt"], r["response"], "chat", 64) for r in data.attack_adv]
    evalset = prepare_eval(tok, data.eval_adv, data.eval_bgn, "chat", 64, SMALL_EVAL)
    config = AttackConfig(method="lora", lr=1e-2, samples=8, steps=4)
    points = run_attack(model, tok, config, AttackData(enc, [], 0), evalset, eval_every=2, model_section=recipe.model)
    assert [p.step for p in points] == [0, 2, 4]
    assert points[-1].harmful_loss < points[0].harmful_loss
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_negligible_attack_is_inconclusive_and_gradients_sampled(tiny_llama_dir):
    result, verdict = run_suite(str(tiny_llama_dir), str(tiny_llama_dir), _recipe(lr=1e-9, steps=5),
                                eval_settings=SMALL_EVAL)
    assert verdict.status == "inconclusive"
    base, hard = result.runs_of("base")[0], result.runs_of("hardened")[0]
    assert base.final.harmful_loss == pytest.approx(base.start.harmful_loss, rel=1e-4)
    assert hard.points == base.points
    grads = {(g.model, g.stream): g.vectors for g in result.gradients}
    assert set(grads) == {("base", "adv"), ("base", "bgn"), ("hardened", "adv"), ("hardened", "bgn")}
    assert all(len(v) == 128 for vs in grads.values() for v in vs)
    assert grads["base", "adv"] == grads["hardened", "adv"]
    assert grads["base", "adv"] != grads["base", "bgn"]


def test_projection_is_shared_and_preserves_inner_products():
    torch.manual_seed(0)
    a, b = torch.randn(5000), torch.randn(5000)
    c = a + 0.1 * torch.randn(5000)
    pa, pb, pc = (project([("w", x)], 128) for x in (a, b, c))
    assert torch.equal(pa, project([("w", a)], 128))
    cos = torch.nn.functional.cosine_similarity
    assert cos(pa, pc, dim=0) > 0.9
    assert abs(float(cos(pa, pb, dim=0))) < 0.4


def test_attack_defaults_are_the_reference_evaluation():
    """Existing grids keep today's optimisation: cosine, 10 % warm-up, weight decay 0.01, clipping at 1."""
    assert ATTACK_DEFAULTS == {"scheduler": "cosine", "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0}
    assert attack_label(AttackConfig(lr=5e-5, samples=1000)) == "full/adamw lr=5e-05 n=1000"


def test_demo_style_schedule_is_constant_without_warmup():
    demo = AttackConfig(lr=2e-4, samples=2000, steps=200, batch_size=32, scheduler="constant", warmup_ratio=0,
                        weight_decay=0, max_grad_norm=None, eval_every=5)
    assert attack_label(demo) == "full/adamw lr=2e-04 n=2000 steps=200 bs=32 constant warmup=0 wd=0 clip=none every=5"
    param = torch.nn.Parameter(torch.zeros(1))
    lrs = []
    for config in (demo, demo.model_copy(update={"scheduler": "cosine", "warmup_ratio": 0.1})):
        opt = _optimizer(config, [param])
        sched = _schedule(config, opt, 200)
        seen = []
        for _ in range(200):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        lrs.append(seen)
        assert opt.param_groups[0]["weight_decay"] == config.weight_decay
    assert lrs[0] == [2e-4] * 200
    assert lrs[1][0] == 0.0 and lrs[1][20] == pytest.approx(2e-4) and lrs[1][-1] < 1e-6


def test_first_success_reads_the_trajectory():
    def point(step, harm):
        return EvalPoint(step=step, harmful_loss=1.0, benign_loss=1.0, harmful_success=harm)

    run = AttackRun(config=AttackConfig(lr=1e-4, samples=8), model="base",
                    points=[point(0, None), point(5, 0.4), point(10, 0.5), point(15, 0.9)])
    assert run.first_success(0.5).step == 10
    assert run.first_success(0.95).step == 15  # never reached: the last point
    assert run.first_success(0.0).step == 5  # points without a score never qualify


def test_caller_data_and_per_attack_eval_every(tiny_llama_dir):
    """``data=`` replaces the recipe's held-out split; an attack's ``eval_every`` replaces the section's."""
    recipe = _recipe(steps=4, extra=["attack.attacks.0.eval_every=2", "attack.attacks.0.scheduler=constant",
                                     "attack.attacks.0.max_grad_norm=null", "attack.harmful_success=true",
                                     "attack.benign_scorer=exact_match", "attack.generate_prompts=3"])
    records = [{"prompt": f"mul {a} {b}", "response": str(a * b)} for a in range(3) for b in range(3)]
    benign = [{"prompt": f"first {w}", "response": w[0]} for w in ("cab", "dog", "elk", "fox")]
    data = SuiteData(attack_adv=records[:6], attack_bgn=benign[:2], eval_adv=records[6:], eval_bgn=benign[2:])
    settings = EvalSettings.from_section(recipe.attack, samples=6)
    result = run_attacks(str(tiny_llama_dir), recipe, eval_settings=settings, gradients=False, data=data)
    (run,) = result.runs
    assert [p.step for p in run.points] == [0, 2, 4]
    assert all(p.harmful_success is not None and p.benign_accuracy is not None for p in run.points)
    assert result.extra["data_fingerprints"] == data.fingerprints()
    assert result.extra["records"] == {"attack_adv": 6, "attack_bgn": 2, "eval_adv": 3, "eval_bgn": 2,
                                       "generate_adv": 3, "generate_bgn": 2}
    assert result.extra["eval_settings"]["benign_scorer"] == "exact_match"


def test_reused_base_results_give_the_same_suite_and_mismatches_are_refused(tiny_llama_dir, tmp_path):
    """A real attack on the hardened side, the base side taken from an earlier result (seeded runs
    are reproducible, so the reused suite equals a fresh one); a different grid or data is refused."""
    from seamharden.attack.suite import reused_base_side
    from seamharden.errors import UserError

    recipe = _recipe(lr=1e-2, steps=4)
    fresh, fresh_verdict = run_suite(str(tiny_llama_dir), str(tiny_llama_dir), recipe, eval_settings=SMALL_EVAL)
    done = []
    reused, reused_verdict = run_suite(str(tiny_llama_dir), str(tiny_llama_dir), recipe, eval_settings=SMALL_EVAL,
                                       base_results=fresh, progress=lambda d, n, total: done.append((n, total)))
    assert reused.runs == fresh.runs and reused.gradients == fresh.gradients
    assert reused_verdict.status == fresh_verdict.status and reused.extra["base_results_reused"] is True
    assert done[-1][0] == done[-1][1] == 4 + 8  # only the hardened side: 4 steps, 8 gradient batches

    other = _recipe(lr=2e-2, steps=4)
    data = suite_data(recipe)
    data.eval_adv = data.eval_adv[:-1]
    with pytest.raises(UserError) as err:
        reused_base_side(fresh, [*_recipe(lr=2e-2).attack.attacks], data, SMALL_EVAL, gradients=True)
    assert "no base run for full/adamw lr=2e-02" in str(err.value) and "data fingerprints" in str(err.value)
    with pytest.raises(UserError, match="evaluation settings"):
        run_suite(str(tiny_llama_dir), str(tiny_llama_dir), other, base_results=fresh)
