"""``seam.hvp_graph=reuse`` (one double backward through the kept graphs of g_a and g_b) against
``recompute`` (today's two recomputing HVPs) and against autograd's exact gradient of the whole
objective, in fp32 on random and trained tiny models."""

import copy
from dataclasses import replace

import pytest
import torch

from seamharden.core.estimator import DEFAULT_HVP_GRAPH, LOCAL, replay_rng
from seamharden.core.fidelity import agreement
from seamharden.core.losses import adversarial_losses, lm_loss
from seamharden.core.step import SeamConfig, keeps_graphs, seam_step, trainable_parameters
from seamharden.fidelity import build_batches
from seamharden.tiny import TRAINED_VOCAB, build_tiny_model, build_tiny_tokenizer, build_trained_tiny_model
from tests.core.helpers import ADV_TEXTS, BGN_TEXTS, make_batch, tiny

ADV, BGN = make_batch(ADV_TEXTS), make_batch(BGN_TEXTS)
ALN = make_batch([(p, " I can't help with that.") for p, _ in ADV_TEXTS])
TRAINED_TOKENIZER = build_tiny_tokenizer(TRAINED_VOCAB)
RTOL = 1e-5  # fp32: the two paths differ only in the order of floating-point sums


def _draw_seeds(seed: int) -> tuple[int, int, int]:
    """The (seed_a, seed_b, seed_up) seam_step draws after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return tuple(int(torch.randint(0, 2**62, (1,)).item()) for _ in range(3))


def _step_grads(model, adv, aln, bgn, cfg, seed=5, grad_scale=1.0):
    params = trainable_parameters(model)
    for p in params:
        p.grad = None
    torch.manual_seed(seed)
    stats = seam_step(model, adv, aln, bgn, cfg, grad_scale=grad_scale)
    grads = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    return grads, stats


def _exact_objective_grads(model, adv, aln, bgn, cfg, seed=5):
    """autograd's grad of L_ul + alpha L_up + beta cos(g_a, g_b), with seam_step's dropout masks."""
    params = trainable_parameters(model)
    seed_a, seed_b, seed_up = _draw_seeds(seed)
    with replay_rng(seed_a):
        loss_adv, loss_ul = adversarial_losses(model, adv, cfg.unlearn_loss)
    g_a = torch.autograd.grad(loss_adv, params, create_graph=True)
    with replay_rng(seed_up):
        loss_up = lm_loss(model, aln)
    with replay_rng(seed_b):
        g_b = torch.autograd.grad(lm_loss(model, bgn), params, create_graph=True)
    dot = sum((x * y).sum() for x, y in zip(g_a, g_b, strict=True))
    cos = dot / (sum((x * x).sum() for x in g_a).sqrt() * sum((y * y).sum() for y in g_b).sqrt())
    ul = -loss_adv if cfg.unlearn_loss == "ascent" else loss_ul
    return list(torch.autograd.grad(ul + cfg.alpha * loss_up + cfg.beta * cos, params))


def _close(x, y, rtol=RTOL) -> bool:
    return agreement(x, y)["relative_error"] < rtol


def _sd_part(model, adv, aln, bgn, cfg, seed=5):
    """The beta * grad cos part of a step: the step minus the same step at beta = 0."""
    full, _ = _step_grads(model, adv, aln, bgn, cfg, seed)
    base, _ = _step_grads(model, adv, aln, bgn, SeamConfig(alpha=cfg.alpha, beta=0.0,
                                                           unlearn_loss=cfg.unlearn_loss), seed)
    return [f - b for f, b in zip(full, base, strict=True)]


def _check(model, adv, aln, bgn, variant="bounded_lens", beta=0.5, seed=5):
    """reuse == recompute == autograd (whole step), and the L_sd parts of the two paths agree closely."""
    cfg = SeamConfig(alpha=0.7, beta=beta, unlearn_loss=variant)
    assert cfg.hvp_graph == "reuse" and keeps_graphs(cfg)
    reuse, stats = _step_grads(model, adv, aln, bgn, cfg, seed)
    recompute, old = _step_grads(model, adv, aln, bgn, replace(cfg, hvp_graph="recompute"), seed)
    exact = _exact_objective_grads(model, adv, aln, bgn, cfg, seed)
    assert _close(reuse, exact) and _close(recompute, exact)
    assert stats.cosine == pytest.approx(old.cosine, abs=1e-6) and stats.step_size == 0.0
    assert stats.estimate_ok is None
    sd_reuse = _sd_part(model, adv, aln, bgn, cfg, seed)
    sd_recompute = _sd_part(model, adv, aln, bgn, replace(cfg, hvp_graph="recompute"), seed)
    # the L_sd part alone (beta * grad cos, small next to L_ul + alpha L_up) is where the paths differ
    assert agreement(sd_reuse, sd_recompute)["relative_error"] < 1e-4


def test_reuse_is_the_default_on_one_process_only():
    assert DEFAULT_HVP_GRAPH == "reuse" and SeamConfig().hvp_graph == "reuse" and keeps_graphs(SeamConfig(), LOCAL)
    assert not keeps_graphs(SeamConfig(beta=0.0))
    assert not keeps_graphs(SeamConfig(difference="central"))
    assert not keeps_graphs(SeamConfig(hvp_graph="recompute"))

    class Sharded(type(LOCAL)):
        exact_hvp = False
        reuses_graph = False
    assert not keeps_graphs(SeamConfig(), Sharded())


@pytest.mark.parametrize("variant", ["bounded_lens", "ascent"])
@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "gpt_neox"])
def test_reuse_equals_recompute_and_autograd_on_random_weights(family, variant):
    _check(tiny(family), ADV, ALN, BGN, variant)


@pytest.fixture(scope="module")
def trained():
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = build_trained_tiny_model(family, tokenizer=TRAINED_TOKENIZER, attn_implementation="eager")
        return copy.deepcopy(cache[family])
    return get


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_reuse_equals_recompute_and_autograd_on_trained_weights(trained, family):
    adv, bgn = build_batches(TRAINED_TOKENIZER, examples=4, max_length=48, seed=1)
    aln, _ = build_batches(TRAINED_TOKENIZER, examples=4, max_length=48, seed=2)
    _check(trained(family), adv, aln, bgn)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_reuse_with_dropout_differentiates_the_passes_own_masks(family):
    # GPT-2's tiny config has dropout 0.1 everywhere; the Llama one gets attention dropout 0.1
    model = tiny(family, eval_mode=False, **({"attention_dropout": 0.1} if family == "llama" else {}))
    _check(model, ADV, ALN, BGN)
    # the masks matter: another seed gives another gradient
    cfg = SeamConfig(beta=0.5)
    assert not _close(_step_grads(model, ADV, ALN, BGN, cfg, seed=5)[0],
                      _step_grads(model, ADV, ALN, BGN, cfg, seed=6)[0], rtol=1e-3)


def test_reuse_with_lora_adapters():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("llama"), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    # adapters start at B = 0; move them so that every adapter gradient and Hessian block is non-trivial
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in trainable_parameters(model):
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    _check(model, ADV, ALN, BGN)
    assert all(p.grad is None and torch.equal(p.detach(), frozen[n])
               for n, p in model.named_parameters() if not p.requires_grad)


def test_reuse_with_sdpa_and_non_reentrant_gradient_checkpointing():
    model = build_tiny_model("llama", vocab_size=320).train()
    reference = copy.deepcopy(model).eval()
    reference.set_attn_implementation("eager")
    model.config.use_cache = False
    model.gradient_checkpointing_enable({"use_reentrant": False})
    flags = torch.backends.cuda.flash_sdp_enabled()
    cfg = SeamConfig(alpha=0.7, beta=0.5)
    reuse, _ = _step_grads(model, ADV, ALN, BGN, cfg)
    assert torch.backends.cuda.flash_sdp_enabled() == flags  # math_attention restored the flags
    recompute, _ = _step_grads(model, ADV, ALN, BGN, SeamConfig(alpha=0.7, beta=0.5, hvp_graph="recompute"))
    exact = _exact_objective_grads(reference, ADV, ALN, BGN, cfg)
    assert _close(reuse, exact) and _close(recompute, exact)


def test_reuse_accumulates_with_grad_scale():
    model = tiny("llama").double()  # fp64: the sums of micro-batch gradients are then exact to ~1e-15
    params = trainable_parameters(model)
    cfg = SeamConfig(alpha=0.7, beta=0.5)
    once, _ = _step_grads(model, ADV, ALN, BGN, cfg, seed=5)
    for p in params:
        p.grad = torch.ones_like(p)  # earlier micro-batches' gradients are added to
    for seed in (5, 5):
        torch.manual_seed(seed)
        seam_step(model, ADV, ALN, BGN, cfg, grad_scale=0.5)
    assert _close([p.grad - 1 for p in params], once, rtol=1e-10)
    swapped, _ = _step_grads(model, BGN, ALN, ADV, cfg, seed=5)
    # two different micro-batches at 1/2 each: the mean of their steps
    for p in params:
        p.grad = None
    for adv, bgn in ((ADV, BGN), (BGN, ADV)):
        torch.manual_seed(5)
        seam_step(model, adv, ALN, bgn, cfg, grad_scale=0.5)
    assert _close([p.grad for p in params], [(x + y) / 2 for x, y in zip(once, swapped, strict=True)], rtol=1e-10)
