"""``seam.delay_restart``: at ``beta_delay`` the run starts afresh from the weights reached (a fresh
AdamW and warm-up, the anchor's reference re-taken, the anchor weight reset), and resumes bit-exactly."""

import json

import pytest
import torch

from seamharden.errors import UserError
from seamharden.recipe.loading import load_recipe
from seamharden.train import checkpoint, loop, utility
from tests.train.test_train_loop import _tiny_run

RESTART = ["train.steps=6", "train.warmup_ratio=0.34", "train.scheduler=cosine", "seam.beta=0.5",
           "seam.beta_delay=3", "seam.delay_restart=true", "utility.anchor=1.0", "seam.difference=central"]


def _run(run_dir, overrides=(), stop_after=None, resume=False, score=None):
    torch.manual_seed(0)
    model, data, recipe = _tiny_run([*RESTART, *overrides])
    run_dir.mkdir(exist_ok=True)
    outcome = loop.train(model, data, recipe, run_dir, stop_after=stop_after, resume=resume, score=score)
    rows = [json.loads(line) for line in (run_dir / loop.METRICS).read_text().splitlines()]
    return model, rows, outcome


def test_the_restart_takes_a_fresh_schedule_optimizer_and_anchor_reference(tmp_path):
    _, rows, _ = _run(tmp_path, ["train.checkpoint_every=3"])
    lrs = [r["lr"] for r in rows]
    assert lrs[:3] == lrs[3:] and lrs[2] < lrs[1]  # the cosine schedule runs twice: 3 steps, then 3 again
    assert [r.get("restart", False) for r in rows] == [False, False, True, False, False, False]
    kl = [r["anchor_kl"] for r in rows]
    # step 4's model is the new reference (KL 0 up to rounding); steps 2-3 and 5 have moved off theirs
    assert kl[3] < 1e-6 and min(kl[1], kl[2], kl[4]) > 1e3 * max(kl[3], 1e-12)
    ckpts = tmp_path / loop.CHECKPOINTS  # older checkpoints are deleted; the restart's reference stays
    assert checkpoint.latest(ckpts).name == "step-6" and not (ckpts / "step-3").exists()
    assert (ckpts / loop.RESTART_REFERENCE).is_file()


def test_the_restart_resets_the_anchor_weight(tmp_path, monkeypatch):
    monkeypatch.setattr(utility, "within_budget", lambda *a, **k: False)  # always out of budget: weight rises
    _, rows, _ = _run(tmp_path, ["utility.check_every=1", "train.steps=4", "train.checkpoint_every=3",
                                 "utility.raise_by=1.0", "utility.max_anchor=3.0"], score=lambda model: 1.0)
    assert [r["anchor_weight"] for r in rows] == [1.0, 2.0, 3.0, 1.0]  # raised twice, back to utility.anchor


def test_the_checkpoint_at_the_restart_holds_a_fresh_optimizer(tmp_path):
    _run(tmp_path, ["train.checkpoint_every=3"], stop_after=3)
    state = checkpoint.load(tmp_path / loop.CHECKPOINTS / "step-3", _tiny_run(RESTART)[0])
    assert state.optimizer["state"] == {}  # AdamW's moments start again
    assert state.scheduler["last_epoch"] == 0  # and the second schedule at its start


@pytest.mark.parametrize("stop_after", [2, 3, 4])
def test_a_resumed_restart_run_ends_bit_identical(tmp_path, stop_after):
    straight, rows, _ = _run(tmp_path / "straight", ["train.checkpoint_every=2"])
    _run(tmp_path / "split", ["train.checkpoint_every=2"], stop_after=stop_after)
    resumed, split_rows, outcome = _run(tmp_path / "split", ["train.checkpoint_every=2"], resume=True)
    assert outcome.finished and outcome.steps_done == 6
    assert split_rows == [{**r, "seconds": s["seconds"], "tokens_per_s": s["tokens_per_s"]}
                          for r, s in zip(rows, split_rows, strict=True)]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_delay_restart_needs_a_beta_delay_and_an_optimizer_it_can_replace():
    with pytest.raises(UserError, match="delay_restart needs seam.beta_delay"):
        load_recipe("tiny", ["seam.delay_restart=true"])
    with pytest.raises(UserError, match="paged_adamw8bit"):
        load_recipe("tiny", ["train.steps=4", "seam.beta_delay=2", "seam.delay_restart=true",
                             "train.optimizer=paged_adamw8bit"])


def test_the_dry_run_counts_the_restart_reference_under_lora(tiny_llama_dir):
    from seamharden.protect import dry_run_plan

    plain = dry_run_plan(str(tiny_llama_dir), load_recipe("lora", ["utility.anchor=1.0", "train.steps=4",
                                                              "seam.beta_delay=2"]))
    restart = dry_run_plan(str(tiny_llama_dir), load_recipe("lora", ["utility.anchor=1.0", "train.steps=4",
                                                                "seam.beta_delay=2", "seam.delay_restart=true"]))
    assert plain["anchor_reference"] == "adapters_off" and plain["memory_bytes"]["anchor_reference"] == 0
    assert restart["anchor_reference"] == "copy" and restart["memory_bytes"]["anchor_reference"] > 0


def test_a_resume_after_the_restart_without_its_reference_is_a_user_error(tmp_path):
    _run(tmp_path, ["train.checkpoint_every=2"], stop_after=4)
    (tmp_path / loop.CHECKPOINTS / loop.RESTART_REFERENCE).unlink()
    with pytest.raises(UserError, match="anchor reference taken at the restart .* is missing") as err:
        _run(tmp_path, ["train.checkpoint_every=2"], resume=True)
    assert err.value.exit_code == 2 and "/" not in str(err.value)
