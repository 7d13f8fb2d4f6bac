"""The utility budget: the anchor's gradient, the controller's rules, kept weights and exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from seamharden.core.budget import next_anchor_weight, within_budget
from seamharden.core.losses import forward
from seamharden.protect import protect
from seamharden.recipe.loading import load_recipe
from seamharden.recipe.schema import UtilitySection
from seamharden.tiny import build_tiny_model
from seamharden.train.utility import AnchorReference, UtilityController, anchor_backward, reference_mode

UTILITY = ["train.steps=6", "train.checkpoint_every=4", "data.max_length=48", "utility.anchor=1.0",
           "utility.check_every=2", "utility.val_samples=8", "utility.tolerance=0.0"]


def test_budget_rules():
    assert within_budget(1.05, 1.0, 0.05, "loss") and not within_budget(1.06, 1.0, 0.05, "loss")
    assert within_budget(0.95, 1.0, 0.05, "exact_match") and not within_budget(0.94, 1.0, 0.05, "exact_match")
    assert not within_budget(float("nan"), 1.0, 0.05, "loss")
    rules = {"raise_by": 1.0, "lower_by": 0.3, "floor": 1.0, "top": 3.0}
    assert next_anchor_weight(1.0, True, **rules) == 1.0  # never below the floor
    assert next_anchor_weight(2.0, True, **rules) == pytest.approx(1.7)
    assert next_anchor_weight(2.5, False, **rules) == 3.0  # capped


def _batch(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, 10), generator=g)
    labels = ids.clone()
    labels[:, :4] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_anchor_gradient_is_the_kl_gradient_and_vanishes_at_the_reference():
    model = build_tiny_model("llama", seed=0).float()
    batch = _batch(model.config.vocab_size)
    params = [p for p in model.parameters() if p.requires_grad]
    reference = AnchorReference(model, "copy")
    assert anchor_backward(model, reference, batch, 2.0, params) == pytest.approx(0.0, abs=1e-6)
    assert all(p.grad is None or p.grad.abs().max() < 1e-5 for p in params)

    with torch.no_grad():  # move away from the reference: KL > 0, gradient = 2 x autograd of the KL
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
    model.zero_grad(set_to_none=True)
    kl = anchor_backward(model, reference, batch, 2.0, params)
    got = [p.grad.clone() for p in params]
    logp = torch.log_softmax(forward(model, batch).logits[:, :-1].float(), -1)
    ref = torch.log_softmax(forward(reference.frozen, batch).logits[:, :-1].float(), -1).detach()
    keep = batch["labels"][:, 1:] != -100
    manual = (ref.exp() * (ref - logp)).sum(-1)[keep].mean()
    want = torch.autograd.grad(2.0 * manual, params)
    assert kl == pytest.approx(manual.item(), rel=1e-5) and kl > 0
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-7)


def test_reference_mode():
    section = UtilitySection(anchor=1.0)
    assert reference_mode(section, lora=True) == "adapters_off" and reference_mode(section, lora=False) == "copy"
    with pytest.raises(ValueError, match="needs model.lora"):
        reference_mode(UtilitySection(anchor=1.0, reference="adapters_off"), lora=False)


def test_controller_keeps_the_last_within_budget_weights(tmp_path):
    model = build_tiny_model("llama", seed=0).float()
    scores = iter([1.0, 0.9, 0.5, 0.95, 0.2])  # start, then checks at steps 2, 4, 6, 8
    section = UtilitySection(anchor=1.0, check_every=2, metric="exact_match", tolerance=0.1)
    ctl = UtilityController(section, lambda m: next(scores), tmp_path)
    ctl.begin(model)
    weights, entries = [], {}
    first = next(model.parameters())
    for step in range(1, 9):
        with torch.no_grad():
            first.fill_(float(step))
        entries[step] = ctl.after_step(step, model)
        weights.append(ctl.weight)
    assert [entries[s].get("kept") for s in (2, 4, 6, 8)] == [True, False, True, False]
    assert entries[1] == {} and entries[4]["val_metric"] == 0.5
    assert weights == [1.0, 1.0, 1.0, 2.0, 2.0, pytest.approx(1.7), pytest.approx(1.7), pytest.approx(2.7)]
    assert ctl.finish(model) == 6
    assert float(first.detach().flatten()[0]) == 6.0


def test_controller_off_records_nothing(tmp_path):
    ctl = UtilityController(UtilitySection(), None, tmp_path)
    model = build_tiny_model("llama", seed=0)
    assert ctl.begin(model) == {} and ctl.after_step(5, model) == {} and ctl.finish(model) is None
    assert not (tmp_path / "kept").exists()


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("extra", [[], ["utility.anchor_data={kind: builtin, path: chat_facts}"]],
                         ids=["bgn", "anchor_data"])
def test_protect_with_anchor_and_controller_resumes_exactly(tiny_llama_dir, tmp_path, extra):
    """With ``utility.anchor_data`` the anchor's own stream is checkpointed too: the resume is still exact."""
    recipe = load_recipe("tiny", [*UTILITY, *extra])
    full, split = tmp_path / "full", tmp_path / "split"
    done = protect(str(tiny_llama_dir), full, recipe, smoke_test=None)
    rows = _rows(full)
    assert [r["step"] for r in rows if "val_metric" in r] == [2, 4, 6]
    assert all(r["anchor_weight"] >= 1.0 and r["anchor_kl"] >= 0 for r in rows)
    assert rows[0]["anchor_kl"] == pytest.approx(0.0, abs=1e-6)  # step 1 starts at the reference
    kept = [r["step"] for r in rows if r.get("kept")]
    assert done.hardening["kept_step"] == (kept[-1] if kept else 0)
    manifest = json.loads((full / "seamharden.json").read_text())
    assert manifest["extra"]["kept_step"] == done.hardening["kept_step"]
    assert "val_bgn" in manifest["data_fingerprints"] and not (full / "kept").exists()
    assert ("anchor_data" in manifest["data_fingerprints"]) is bool(extra)

    first = protect(str(tiny_llama_dir), split, recipe, stop_after=5, smoke_test=None)  # checkpoint at 4 and 5
    assert not first.finished and (split / "kept").is_dir()
    second = protect(str(tiny_llama_dir), split, recipe, resume=True, smoke_test=None)
    assert second.hardening == done.hardening
    assert _rows(split) == [{**r, "seconds": s["seconds"], "tokens_per_s": s["tokens_per_s"]}
                            for r, s in zip(rows, _rows(split), strict=True)]
    a, b = load_file(full / "model.safetensors"), load_file(split / "model.safetensors")
    assert all(a[k].equal(b[k]) for k in a)


def test_lora_anchor_uses_the_adapter_free_model_as_reference(tiny_llama_dir, tmp_path):
    recipe = load_recipe("tiny", [*UTILITY, "train.steps=2", "utility.check_every=0",
                                  "model.lora={r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}"])
    protect(str(tiny_llama_dir), tmp_path / "lora", recipe, smoke_test=None)
    rows = _rows(tmp_path / "lora")
    assert rows[0]["anchor_kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA B starts at 0: model == reference
    assert rows[1]["anchor_kl"] > 0


@pytest.mark.parametrize(("rho", "fails"), [(0.5, True), (1e-5, False)])
def test_estimator_self_check_reaches_the_manifest_and_the_cli(tiny_llama_dir, tmp_path, rho, fails):
    """A far too large finite-difference step fails the h / h/2 self-check; a small fp32 one passes."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    args = ["train.steps=2", "data.max_length=48", "seam.difference=forward", f"seam.relative_step={rho}",
            "seam.self_check=true"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "seamharden", "protect", str(tiny_llama_dir), str(out), "--recipe",
                           "tiny", "--no-smoke-test", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    est = json.loads((out / "seamharden.json").read_text())["extra"]["estimator"]
    assert est["difference"] == "forward" and est["checked_steps"] == 2
    assert (est["failed_steps"] > 0) is fails
    assert ("failed its self-check" in proc.stderr + proc.stdout) is fails


def test_anchor_data_without_an_anchor_or_of_harmful_records_is_refused_before_loading():
    from seamharden.errors import UserError

    with pytest.raises(UserError, match=r"utility.anchor_data needs utility.anchor > 0"):
        load_recipe("tiny", ["utility.anchor=0", "utility.anchor_data={kind: builtin, path: chat_facts}"])
    for harmful in ("{kind: builtin, path: chat_adv}", "{kind: builtin, path: adv, max_samples: 40}"):
        with pytest.raises(UserError, match="anchor_data is harmful data"):
            load_recipe("smollm2-135m-cpu", [f"utility.anchor_data={harmful}"])
    with pytest.raises(UserError, match="anchor_data is harmful data"):  # a slice of a local D_adv file too
        load_recipe("smollm2-135m-cpu", ["data.adv={kind: local, path: harm.jsonl}",
                                         "utility.anchor_data={kind: local, path: harm.jsonl, max_samples: 5}"])
    recipe = load_recipe("smollm2-135m-cpu")
    assert recipe.utility.anchor_data.path == "chat_facts" and recipe.utility.anchor > 0


def test_a_controller_that_would_never_check_is_refused_before_loading():
    from seamharden.errors import UserError

    with pytest.raises(UserError, match=r"utility.check_every \(10\) exceeds train.steps \(6\)"):
        load_recipe("toy", ["train.steps=6"])
    assert load_recipe("toy", ["train.steps=6", "utility.check_every=0"]).utility.check_every == 0
