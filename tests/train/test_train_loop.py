"""The loop's divergence handling: stop, name the term, keep the last good checkpoint."""

import dataclasses
import json
import math

import pytest
import torch

from seamharden.core import step as core_step
from seamharden.data.seam_data import build_seam_data
from seamharden.errors import ExitCode, UserError
from seamharden.recipe.loading import load_recipe
from seamharden.tiny import build_tiny_model, build_tiny_tokenizer
from seamharden.train import checkpoint, loop, stall


def test_non_finite_term_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    recipe = load_recipe("tiny", ["train.steps=6", "train.checkpoint_every=2", "data.max_length=48"])
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model("llama", vocab_size=len(tokenizer))
    data = build_seam_data(recipe.data, tokenizer, recipe.train.batch_size, recipe.train.seed)
    calls = []

    def flaky_step(*args, **kwargs):
        stats = core_step.seam_step(*args, **kwargs)
        calls.append(1)
        return dataclasses.replace(stats, loss_sd=math.nan) if len(calls) == 3 else stats

    monkeypatch.setattr(loop, "seam_step", flaky_step)
    with pytest.raises(UserError) as err:
        loop.train(model, data, recipe, tmp_path)
    assert err.value.exit_code == ExitCode.DIVERGED
    assert "step 3" in str(err.value) and "L_sd" in str(err.value) and "step-2" in str(err.value)
    assert checkpoint.latest(tmp_path / loop.CHECKPOINTS).name == "step-2"
    logged = [json.loads(line)["step"] for line in (tmp_path / loop.METRICS).read_text().splitlines()]
    assert logged == [1, 2]


def _tiny_run(overrides):
    recipe = load_recipe("tiny", ["data.max_length=48", *overrides])
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model("llama", vocab_size=len(tokenizer))
    data = build_seam_data(recipe.data, tokenizer, recipe.train.batch_size, recipe.train.seed)
    return model, data, recipe


@pytest.mark.parametrize("every, kept", [(2, "step-2"), (3, None)])
def test_a_run_whose_gradient_stays_zero_stops_and_keeps_only_checkpoints_from_before(tmp_path, monkeypatch,
                                                                                      every, kept):
    """Zero gradient from step 4 on: the weights written after step 3 are already stalled ones."""
    model, data, recipe = _tiny_run(["train.steps=12", f"train.checkpoint_every={every}"])
    real_clip, calls = loop._clip_, []

    def clip(params, max_norm):
        calls.append(1)
        norm = real_clip(params, max_norm)
        return 0.0 if len(calls) >= 4 else norm

    monkeypatch.setattr(loop, "_clip_", clip)
    with pytest.raises(UserError) as err:
        loop.train(model, data, recipe, tmp_path)
    message = str(err.value)
    assert err.value.exit_code == ExitCode.DIVERGED
    assert f"stopped learning at step {3 + stall.STALL_STEPS}" in message and "exactly 0" in message
    assert "since step 4" in message and "--resume with a lower train.lr" in message
    found = checkpoint.latest(tmp_path / loop.CHECKPOINTS)
    if kept is None:  # step-3 held the stalled weights: removed, and said so
        assert found is None and "starts again from step 0" in message
    else:  # step-4 was put off while the streak ran; step-2 is the last good one
        assert found.name == kept and kept in message


def test_a_benign_loss_at_ln_vocab_for_several_steps_stops_the_run(tmp_path, monkeypatch):
    model, data, recipe = _tiny_run(["train.steps=12", "train.checkpoint_every=100"])
    real_step, calls = loop.seam_step, []
    uniform = math.log(model.config.vocab_size)

    def flat_step(*args, **kwargs):
        stats = real_step(*args, **kwargs)
        calls.append(1)
        return dataclasses.replace(stats, loss_bgn=uniform * (1 - 1e-6)) if len(calls) >= 2 else stats

    monkeypatch.setattr(loop, "seam_step", flat_step)
    with pytest.raises(UserError, match=r"stopped learning at step 4: the benign loss .* ln\(320\)") as err:
        loop.train(model, data, recipe, tmp_path)
    assert err.value.exit_code == ExitCode.DIVERGED


def test_stall_watch_thresholds():
    watch = stall.StallWatch(vocab=320)
    log_v = math.log(320)
    near = {"grad_norm": 1.0, "loss_bgn": log_v * (1 - 1.4e-4)}  # the closest a random tiny model came
    assert all(watch.update(s, near) is None for s in range(1, 20)) and not watch.stalling
    zero = {"grad_norm": 0.0, "loss_bgn": 3.0}
    assert watch.update(20, zero) is None and watch.first == 20
    assert watch.update(21, near) is None and not watch.stalling  # a streak is consecutive steps
    assert [watch.update(s, zero) for s in (22, 23)] == [None, None]
    assert "exactly 0 for 3 steps" in watch.update(24, zero) and watch.first == 22


def test_set_peak_lr_rescales_a_restored_schedule():
    from seamharden.train.optim import build_optimizer, build_scheduler, lr_factor, set_peak_lr

    recipe = load_recipe("tiny", ["train.steps=10", "train.lr=1.0"])
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = build_optimizer(params, recipe.train)
    scheduler = build_scheduler(optimizer, recipe.train)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    before = scheduler.get_last_lr()[0]
    assert not set_peak_lr(optimizer, scheduler, 1.0) and scheduler.get_last_lr()[0] == before
    assert set_peak_lr(optimizer, scheduler, 0.01)
    expected = 0.01 * lr_factor(4, 10, 1, "cosine")
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    assert scheduler.get_last_lr()[0] == pytest.approx(expected)
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.01 * lr_factor(5, 10, 1, "cosine"))


def test_metrics_rows_are_strict_json():
    row = loop._json_row({"step": 1, "applied_cosine": math.nan, "grad_norm": math.inf, "cosine": 0.5})
    assert json.loads(row, parse_constant=lambda c: pytest.fail(c)) == {
        "step": 1, "applied_cosine": None, "grad_norm": None, "cosine": 0.5}


def test_beta_delay_trains_the_first_steps_with_beta_zero_then_beta(tmp_path, monkeypatch):
    """``seam.beta_delay=2``: steps 1-2 run the step with beta 0 (no estimator passes: step size 0), 3-4 with
    the recipe's beta; the delayed run's first two steps equal a beta-0 run's, its third does not."""
    seen = []

    def recording_step(*args, **kwargs):
        seen.append(args[4].beta)
        return core_step.seam_step(*args, **kwargs)

    monkeypatch.setattr(loop, "seam_step", recording_step)
    rows = {}
    for name, overrides in {"delayed": ["seam.beta=0.5", "seam.beta_delay=2"], "beta0": ["seam.beta=0"]}.items():
        torch.manual_seed(0)
        model, data, recipe = _tiny_run(["train.steps=4", "seam.difference=central", *overrides])
        (tmp_path / name).mkdir()
        loop.train(model, data, recipe, tmp_path / name)
        rows[name] = [json.loads(line) for line in (tmp_path / name / loop.METRICS).read_text().splitlines()]
    assert seen[:4] == [0.0, 0.0, 0.5, 0.5]
    delayed, beta0 = rows["delayed"], rows["beta0"]
    assert [r["beta"] for r in delayed] == [0.0, 0.0, 0.5, 0.5]
    assert [r["step_size"] for r in delayed[:2]] == [0.0, 0.0] and delayed[2]["step_size"] > 0
    for key in ("loss_ul", "loss_up", "loss_bgn", "grad_norm"):
        assert [r[key] for r in delayed[:2]] == [r[key] for r in beta0[:2]], key
    assert delayed[2]["loss_total"] != beta0[2]["loss_total"]


def test_beta_delay_must_leave_steps_with_l_sd():
    with pytest.raises(UserError, match="beta_delay .4. must be below train.steps"):
        load_recipe("tiny", ["train.steps=4", "seam.beta_delay=4"])
