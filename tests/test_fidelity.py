"""``seamharden.fidelity``: batches, the references, and what is saved."""

from __future__ import annotations

import pytest
import torch

from seamharden.core.estimator import StepPolicy
from seamharden.core.fidelity import agreement
from seamharden.fidelity import (
    DIFF_REFERENCE,
    EXACT_REFERENCE,
    build_batches,
    measure_fidelity,
    named_trainable,
    reference_gradient,
)
from seamharden.tiny import build_tiny_model, build_tiny_tokenizer

TOKENIZER = build_tiny_tokenizer()



def _model(family="llama", dtype=torch.float32):
    return build_tiny_model(family, vocab_size=len(TOKENIZER)).to(dtype)


def test_batches_mask_prompt_and_padding_and_depend_on_seed():
    a, b = build_batches(TOKENIZER, examples=3, max_length=40, seed=0)
    for batch in (a, b):
        assert batch["input_ids"].shape[0] == 3 and batch["input_ids"].shape[1] <= 40
        assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
        assert (batch["labels"][:, 0] == -100).all()
    assert not torch.equal(a["input_ids"][:, :5], b["input_ids"][:, :5]) or a["input_ids"].shape != b["input_ids"].shape
    a2, _ = build_batches(TOKENIZER, examples=3, max_length=40, seed=0)
    a3, _ = build_batches(TOKENIZER, examples=3, max_length=40, seed=1)
    assert torch.equal(a["input_ids"], a2["input_ids"])
    assert not torch.equal(a["input_ids"], a3["input_ids"]) or a["input_ids"].shape != a3["input_ids"].shape


def test_fp32_central_difference_reference_agrees_with_double_backward():
    model = _model().eval()
    a, b = build_batches(TOKENIZER, examples=2, max_length=32)
    exact, kind = reference_gradient(model, a, b, seed=0)
    approx, kind2 = reference_gradient(model, a, b, seed=0, exact_max_params=0)
    assert (kind, kind2) == (EXACT_REFERENCE, DIFF_REFERENCE)
    assert exact[0].dtype == torch.float64 and approx[0].dtype == torch.float32
    assert agreement(approx, exact)["cosine"] > 0.999


def test_measure_leaves_weights_unchanged_and_names_match():
    model = _model("qwen2", torch.bfloat16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    a, b = build_batches(TOKENIZER, examples=2, max_length=32)
    run = measure_fidelity(model, a, b, StepPolicy())
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
        assert p.grad is None
    assert run.names == named_trainable(model) == list(before)
    assert [e.shape for e in run.estimate] == [r.shape for r in run.reference]
    assert all(e.dtype == torch.float32 for e in run.estimate)
    assert run.report.dtype == "bfloat16" and run.report.difference == "hvp" and run.report.step == 0.0
    assert run.report.cosine > 0.99


def test_report_records_the_policy():
    model = _model()
    a, b = build_batches(TOKENIZER, examples=2, max_length=32)
    rel = measure_fidelity(model, a, b, StepPolicy("relative", "forward", relative_step=3e-4)).report
    ab = measure_fidelity(model, a, b, StepPolicy("absolute", "forward", epsilon=1e-2)).report
    assert rel.relative_step == 3e-4 and rel.policy == "relative"
    assert ab.relative_step is None and ab.step == pytest.approx(1e-2)
    central = measure_fidelity(model, a, b, StepPolicy("relative", "central")).report
    assert central.relative_step == 1e-4 and 0 <= central.consistency <= 1
    assert measure_fidelity(model, a, b, StepPolicy()).report.relative_step is None
