import math

import pytest
import torch
import torch.nn.functional as F

from seamharden.core.losses import (
    adversarial_losses,
    bounded_lens_loss,
    forward,
    kl_rows,
    lens_modules,
    lm_loss,
    response_loss,
    scored_forward,
    scored_loss,
)
from seamharden.tiny import build_tiny_model
from tests.core.helpers import ADV_TEXTS, make_batch, tiny


def test_response_loss_is_mean_over_response_tokens_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 5, -100, -100]])
    picked = [(b, t) for b in range(2) for t in range(1, 5) if labels[b, t] != -100]
    manual = sum(F.cross_entropy(logits[b, t - 1][None], labels[b, t][None]) for b, t in picked) / len(picked)
    assert torch.allclose(response_loss(logits, labels), manual, atol=1e-6)


def test_prompt_and_padding_positions_get_no_gradient():
    logits = torch.randn(1, 6, 9, requires_grad=True)
    labels = torch.tensor([[-100, -100, -100, 4, 2, -100]])
    response_loss(logits, labels).backward()
    per_position = logits.grad.abs().sum(-1)[0]
    # position t predicts label t + 1: only positions 2 and 3 predict learned tokens
    assert per_position[2] > 0 and per_position[3] > 0
    assert torch.all(per_position[[0, 1, 4, 5]] == 0)


def test_eos_is_learned():
    batch = make_batch(ADV_TEXTS)
    last = batch["attention_mask"].sum(1) - 1
    eos = batch["input_ids"][torch.arange(2), last]
    assert torch.all(batch["labels"][torch.arange(2), last] == eos)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lm_loss_matches_transformers_loss(family):
    model = tiny(family)
    batch = make_batch(ADV_TEXTS)
    ours = lm_loss(model, batch)
    theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
def test_bounded_lens_loss_matches_manual_logit_lens(family):
    model = tiny(family)
    batch = make_batch(ADV_TEXTS)
    out = forward(model, batch, hidden_states=True)
    norm, head = lens_modules(model)
    n_layers = model.config.num_hidden_layers
    assert len(out.hidden_states) == n_layers + 1
    ces = [response_loss(head(norm(h)), batch["labels"]) for h in out.hidden_states[1:-1]]
    ces.append(response_loss(out.logits, batch["labels"]))
    expected = -math.log1p(sum(c.item() for c in ces) / len(ces))
    assert bounded_lens_loss(model, out, batch["labels"]).item() == pytest.approx(expected, rel=1e-6)


def test_bounded_lens_loss_is_bounded_and_ascent_is_negated_sft():
    model = tiny("llama")
    batch = make_batch(ADV_TEXTS)
    sft, ul = adversarial_losses(model, batch, "bounded_lens")
    assert -math.log1p(50.0) < ul.item() < 0
    sft2, ul2 = adversarial_losses(model, batch, "ascent")
    assert ul2.item() == -sft2.item() and sft2.item() == pytest.approx(sft.item())


def test_kl_rows_matches_manual_mean_over_rows():
    """The anchor's KL on the scored rows (``scored_forward`` picks them; the utility tests check the positions)."""
    torch.manual_seed(0)
    logits, ref = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    manual = sum(F.kl_div(F.log_softmax(logits[r], -1), F.log_softmax(ref[r], -1), log_target=True,
                          reduction="sum") for r in range(3)) / 3
    got = kl_rows(logits, ref)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(manual.item(), rel=1e-5)


def test_kl_rows_is_zero_with_zero_gradient_at_the_reference():
    torch.manual_seed(0)
    ref = torch.randn(6, 5)
    logits = ref.clone().requires_grad_(True)
    loss = kl_rows(logits, ref)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert logits.grad.abs().max().item() < 1e-6
    # and it penalises sharpening: a more confident copy is farther away
    assert kl_rows(ref * 3, ref).item() > 0.01


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "gpt_neox"])
@pytest.mark.parametrize("chunk_rows", [3, 2048])
def test_chunked_lens_equals_full_position_lens_value_and_gradient(family, chunk_rows):
    from seamharden.core.losses import bounded_lens_loss_full

    model = tiny(family).double()
    params = [p for p in model.parameters() if p.requires_grad]
    batch = make_batch(ADV_TEXTS)
    new = bounded_lens_loss(model, forward(model, batch, hidden_states=True), batch["labels"], chunk_rows=chunk_rows)
    g_new = torch.autograd.grad(new, params, allow_unused=True)
    old = bounded_lens_loss_full(model, forward(model, batch, hidden_states=True), batch["labels"])
    g_old = torch.autograd.grad(old, params, allow_unused=True)
    # both upcast the fp64 logits through fp32 (response_loss's .float()), so fp32 tolerance
    assert new.item() == pytest.approx(old.item(), rel=1e-7, abs=1e-7)
    for a, b in zip(g_new, g_old, strict=True):
        assert (a is None) == (b is None)
        if b is not None:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7 * b.abs().max().item())



def test_lens_layers_keep_every_kth_and_the_last():
    from seamharden.core.losses import lens_layers

    assert lens_layers(4) == [1, 2, 3, 4]
    assert lens_layers(30, 6) == [6, 12, 18, 24, 30]
    assert lens_layers(7, 3) == [3, 6, 7]
    assert lens_layers(2, 5) == [2]


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_strided_lens_value_and_gradient_equal_autograd_over_the_chosen_layers(family):
    from seamharden.core.losses import lens_layers

    model = tiny(family, num_hidden_layers=5).double()
    params = [p for p in model.parameters() if p.requires_grad]
    batch = make_batch(ADV_TEXTS)
    out = forward(model, batch, hidden_states=True)
    n_layers = len(out.hidden_states) - 1
    chosen = lens_layers(n_layers, 2)
    norm, head = lens_modules(model)
    ces = [response_loss(head(norm(out.hidden_states[i])), batch["labels"]) for i in chosen[:-1]]
    ces.append(response_loss(out.logits, batch["labels"]))
    expected = -torch.log1p(torch.stack(ces).mean())
    got = bounded_lens_loss(model, out, batch["labels"], chunk_rows=3, stride=2)
    assert got.item() == pytest.approx(expected.item(), rel=1e-7)
    g_exp = torch.autograd.grad(expected, params, retain_graph=True, allow_unused=True)
    g_got = torch.autograd.grad(got, params, allow_unused=True)
    for a, b in zip(g_got, g_exp, strict=True):
        if b is not None:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7 * b.abs().max().item())
    # and the stride really drops layers (the full lens differs on a model with >2 layers)
    if n_layers > 2:
        assert bounded_lens_loss(model, out, batch["labels"]).item() != pytest.approx(got.item(), rel=1e-9)


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "gpt_neox"])
def test_scored_forward_equals_the_full_logits_loss_value_and_gradient(family):
    """The head split off (``scored_forward``) gives the loss and gradient of slicing full [B, T, V] logits."""
    from seamharden.core.losses import _HEAD_IS_LAST

    model = tiny(family, eval_mode=False).double()
    params = [p for p in model.parameters() if p.requires_grad]
    batch = make_batch(ADV_TEXTS)
    torch.manual_seed(1)  # train mode: the same dropout masks in both passes (the probe draws none)
    new = scored_loss(scored_forward(model, batch, split_head=True))
    assert _HEAD_IS_LAST[model] is True and model.training  # the probe ran, and restored train mode
    g_new = torch.autograd.grad(new, params)
    torch.manual_seed(1)
    old = response_loss(forward(model, batch).logits, batch["labels"])
    g_old = torch.autograd.grad(old, params)
    # both losses take fp64 logits through fp32 (``.float()``) and sum different row sets: fp32 tolerance
    assert new.item() == pytest.approx(old.item(), rel=1e-6)
    for a, b in zip(g_new, g_old, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7 * b.abs().max().item())


def test_the_head_runs_on_the_scored_rows_only():
    model = tiny("llama")
    batch = make_batch(ADV_TEXTS)
    scored_forward(model, batch, split_head=True)  # the one-time probe runs outside what is counted
    rows = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, a, out: rows.append(out.shape[:-1]))
    scored = scored_forward(model, batch, split_head=True)
    handle.remove()
    n = int((batch["labels"][:, 1:] != -100).sum())
    assert rows == [torch.Size([2, 0]), torch.Size([n])]  # the model's own call (no position), then ours
    assert scored.logits.shape == (n, model.config.vocab_size) and scored.outputs.logits.shape[1] == 0
    assert torch.equal(scored.targets, batch["labels"][:, 1:][batch["labels"][:, 1:] != -100])
    full = forward(model, batch).logits[:, :-1][batch["labels"][:, 1:] != -100]
    assert torch.allclose(scored.logits, full, atol=1e-6)


@pytest.mark.parametrize("softcap", [None, 5.0])
def test_a_model_that_changes_logits_after_the_head_keeps_the_full_path(softcap):
    """Gemma-2 soft-caps its logits after the head: the probe sees it and the loss stays the model's own."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from seamharden.core.losses import _HEAD_IS_LAST
    from tests.core.helpers import TOKENIZER

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=len(TOKENIZER), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=softcap,
                          attn_implementation="eager", pad_token_id=TOKENIZER.pad_token_id)
    model = Gemma2ForCausalLM(config).eval()
    with torch.no_grad():  # large logits, so that the cap bites
        model.get_output_embeddings().weight.mul_(50)
    batch = make_batch(ADV_TEXTS)
    got = scored_loss(scored_forward(model, batch, split_head=True))
    assert _HEAD_IS_LAST[model] is (softcap is None)
    want = response_loss(forward(model, batch).logits, batch["labels"])
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_the_head_is_split_from_the_vocabulary_threshold_up_and_small_vocabularies_keep_their_bits():
    """Below ``SPLIT_HEAD_MIN_VOCAB`` (the tiny, toy and test tokenizers) ``lm_loss`` is the full-logit loss bit for
    bit, so the runs documented on those models keep their rounding; from it up the head is split."""
    from seamharden.core.losses import _HEAD_IS_LAST, SPLIT_HEAD_MIN_VOCAB

    small = tiny("llama")
    batch = make_batch(ADV_TEXTS)
    assert small.config.vocab_size < SPLIT_HEAD_MIN_VOCAB
    assert torch.equal(lm_loss(small, batch), response_loss(forward(small, batch).logits, batch["labels"]))
    assert small not in _HEAD_IS_LAST  # never probed: the full path was taken
    large = build_tiny_model("llama", seed=0, vocab_size=SPLIT_HEAD_MIN_VOCAB, attn_implementation="eager").eval()
    rows = []
    lm_loss(large, batch)
    handle = large.get_output_embeddings().register_forward_hook(lambda m, a, out: rows.append(out.shape[:-1]))
    lm_loss(large, batch)
    handle.remove()
    assert _HEAD_IS_LAST[large] is True and rows[0] == torch.Size([2, 0])  # the model's own call sees no position
