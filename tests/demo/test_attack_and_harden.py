"""The demo's attack stopping rule and hardening controller, on a tiny untrained model (fast)."""

from __future__ import annotations

import pytest
import torch

from seamharden.demo import attack, harden, pretrain, world


def _weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(before: dict, model) -> bool:
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.fixture()
def tiny():
    tok = pretrain.build_char_tokenizer()
    model = pretrain.build_model(len(tok), seed=0, num_hidden_layers=1, hidden_size=32, intermediate_size=32)
    return model, tok


def test_attack_stops_at_first_success_check(tiny):
    model, tok = tiny
    before = _weights(model)
    steps, _ = attack.finetune_until(model, tok, world.d_adv(64), lr=1e-3, max_steps=7, batch_size=4,
                                     eval_adv=world.eval_forbidden(4), success=0.0, check_every=3)
    assert steps == 0
    assert _unchanged(before, model)


def test_attack_runs_to_budget_when_never_successful(tiny):
    model, tok = tiny
    before = _weights(model)
    steps, _ = attack.finetune_until(model, tok, world.d_adv(64), lr=1e-3, max_steps=7, batch_size=4,
                                     eval_adv=world.eval_forbidden(4), success=1.01, check_every=3)
    assert steps == 7
    assert not _unchanged(before, model)


def test_attack_stops_mid_run_at_the_check_that_succeeds(tiny, monkeypatch):
    model, tok = tiny
    scores = iter([0.0, 0.2, 0.9, 1.0])
    monkeypatch.setattr(world, "harmful_success", lambda *a: next(scores))
    steps, harmful = attack.finetune_until(model, tok, world.d_adv(64), lr=1e-3, max_steps=50, batch_size=4,
                                           eval_adv=world.eval_forbidden(4), success=0.5, check_every=5)
    assert (steps, harmful) == (10, 0.9)


def test_attack_suite_rows(tiny):
    model, tok = tiny
    before = _weights(model)
    rows = attack.attack_suite(model, tok, lrs=(1e-4, 1e-3), max_steps=2, check_every=1, batch_size=4, n_adv=16,
                               success=1.01, eval_bgn=world.eval_benign(3), eval_adv=world.eval_forbidden(3))
    assert [r["lr"] for r in rows] == [1e-4, 1e-3] and all(r["steps"] == 2 for r in rows)
    assert set(rows[0]) == {"lr", "steps", "harmful_success", "benign_accuracy_after"}
    assert _unchanged(before, model)  # attacks ran on copies


def test_controller_loosens_within_budget_and_tightens_outside():
    kw = dict(up=1.0, down=0.3, floor=1.0, top=3.0)
    assert harden.next_anchor(1.0, True, **kw) == 1.0
    assert harden.next_anchor(2.0, True, **kw) == pytest.approx(1.7)
    assert harden.next_anchor(1.0, False, **kw) == pytest.approx(2.0)
    assert harden.next_anchor(2.5, False, **kw) == pytest.approx(3.0)


def test_anchor_loss_is_zero_at_the_reference_and_grows_away_from_it(tiny):
    model, tok = tiny
    batch = world.collate(tok, world.d_bgn(8))
    reference = pretrain.build_model(len(tok), seed=0, num_hidden_layers=1, hidden_size=32, intermediate_size=32)
    assert harden.anchor_loss(model, reference, batch).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(3.0)  # sharper answers, same argmax
    assert harden.anchor_loss(model, reference, batch).item() > 1e-3


def test_harden_keeps_the_last_copy_within_budget(tiny):
    """With a negative tolerance no check is within budget: the model comes back unchanged."""
    model, tok = tiny
    before = _weights(model)
    hist = harden.harden(model, tok, steps=4, batch_size=4, n_data=16, utility_tolerance=-1.0, check_every=2)
    assert [h.get("kept") for h in hist] == [None, False, None, False]
    assert [h["anchor_weight"] for h in hist] == pytest.approx([1.0, 1.0, 2.0, 2.0])
    assert _unchanged(before, model)


def test_harden_within_budget_moves_the_model(tiny):
    model, tok = tiny
    before = _weights(model)
    hist = harden.harden(model, tok, steps=4, batch_size=4, n_data=16, utility_tolerance=2.0, check_every=2)
    assert [h.get("kept") for h in hist] == [None, True, None, True]
    assert not _unchanged(before, model)


def test_harden_anchor_zero_is_plain_seam(tiny, monkeypatch):
    """``anchor=0`` never calls the anchor and keeps the weight at 0 (the ablation the docs report)."""
    model, tok = tiny
    monkeypatch.setattr(harden, "anchor_loss", lambda *a: pytest.fail("anchor used"))
    hist = harden.harden(model, tok, steps=2, batch_size=4, n_data=16, utility_tolerance=-1.0, check_every=1,
                         anchor=0.0)
    assert [h["anchor_weight"] for h in hist] == [0.0, 0.0]


def test_harden_restores_the_last_copy_within_budget(tiny, monkeypatch):
    """Within budget at step 2, out of it at step 4: the model ends on the step-2 weights, in eval mode."""
    model, tok = tiny
    scores = iter([1.0, 1.0, 0.0])  # start, check after step 2, check after step 4
    monkeypatch.setattr(world, "benign_accuracy", lambda *a: next(scores))
    snapshots = []
    real_step = torch.optim.AdamW.step

    def step_and_snapshot(self, *a, **k):
        out = real_step(self, *a, **k)
        snapshots.append(_weights(model))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", step_and_snapshot)
    hist = harden.harden(model, tok, steps=4, batch_size=4, n_data=16, utility_tolerance=0.1, check_every=2)
    assert [h.get("kept") for h in hist] == [None, True, None, False]
    assert _unchanged(snapshots[1], model)
    assert not _unchanged(snapshots[3], model)
    assert not model.training
