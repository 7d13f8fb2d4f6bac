import pytest
import torch

from seamharden.core.fidelity import agreement
from seamharden.core.losses import adversarial_losses, lm_loss
from seamharden.core.step import SeamConfig, seam_step, trainable_parameters
from tests.core.helpers import ADV_TEXTS, BGN_TEXTS, make_batch, tiny

ADV, BGN = make_batch(ADV_TEXTS), make_batch(BGN_TEXTS)
ALN = make_batch([(p, " I can't help with that.") for p, _ in ADV_TEXTS])


@pytest.mark.parametrize("variant", ["ascent", "bounded_lens"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_beta_zero_gives_exactly_ul_plus_alpha_up(family, variant):
    model = tiny(family)
    params = trainable_parameters(model)
    alpha = 0.7
    g_ul = torch.autograd.grad(adversarial_losses(model, ADV, variant)[1], params)
    g_up = torch.autograd.grad(lm_loss(model, ALN) * alpha, params)
    stats = seam_step(model, ADV, ALN, BGN, SeamConfig(alpha=alpha, beta=0.0, unlearn_loss=variant))
    for p, a, b in zip(params, g_ul, g_up, strict=True):
        assert torch.equal(p.grad, a + b)
    assert stats.step_size == 0.0
    assert -1 <= stats.cosine <= 1 and stats.grad_norm_adv > 0 and stats.grad_norm_bgn > 0


def test_step_gradient_is_ul_up_plus_beta_times_sim_gradient():
    model = tiny("llama").double()
    params = trainable_parameters(model)
    cfg = SeamConfig(alpha=1.0, beta=0.5, unlearn_loss="ascent", difference="central")
    seam_step(model, ADV, ALN, BGN, cfg)
    combined = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    seam_step(model, ADV, ALN, BGN, SeamConfig(alpha=1.0, beta=0.0, unlearn_loss="ascent"))
    base = [p.grad.clone() for p in params]
    g_a = torch.autograd.grad(lm_loss(model, ADV), params, create_graph=True)
    g_b = torch.autograd.grad(lm_loss(model, BGN), params, create_graph=True)
    dot = sum((x * y).sum() for x, y in zip(g_a, g_b, strict=True))
    sim = dot / (sum((x * x).sum() for x in g_a).sqrt() * sum((y * y).sum() for y in g_b).sqrt())
    exact = torch.autograd.grad(sim, params)
    sd_part = [c - b for c, b in zip(combined, base, strict=True)]
    assert agreement(sd_part, [0.5 * e for e in exact])["cosine"] > 0.99999
    assert agreement(sd_part, [0.5 * e for e in exact])["relative_error"] < 1e-3


def test_grad_scale_accumulates():
    model = tiny("llama").double()
    params = trainable_parameters(model)
    cfg = SeamConfig(beta=0.0, unlearn_loss="ascent")
    seam_step(model, ADV, ALN, BGN, cfg)
    once = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    seam_step(model, ADV, ALN, BGN, cfg, grad_scale=0.5)
    seam_step(model, ADV, ALN, BGN, cfg, grad_scale=0.5)
    assert all(torch.allclose(p.grad, g, rtol=1e-10) for p, g in zip(params, once, strict=True))


def _train_cosines(beta: float, steps: int = 10) -> list[float]:
    model = tiny("llama")
    params = trainable_parameters(model)
    opt = torch.optim.SGD(params, lr=0.05)
    cosines = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        cosines.append(seam_step(model, ADV, ALN, BGN, SeamConfig(alpha=1.0, beta=beta, unlearn_loss="ascent")).cosine)
        opt.step()
    return cosines


def test_the_sd_term_pushes_the_two_gradients_apart():
    with_sd, without_sd = _train_cosines(beta=1.0), _train_cosines(beta=0.0)
    assert with_sd[0] == pytest.approx(without_sd[0], abs=1e-6)
    assert max(with_sd[-3:]) < with_sd[0] - 0.2
    assert max(with_sd[-3:]) < min(without_sd[-3:]) - 0.2


@pytest.mark.parametrize("difference", ["hvp", "central"])
def test_lora_model_only_adapters_get_gradients(difference):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("llama"), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    stats = seam_step(model, ADV, ALN, BGN, SeamConfig(beta=1.0, unlearn_loss="bounded_lens", difference=difference))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, _ in trainable)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in trainable)
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None and torch.equal(p.detach(), frozen[n])
    if difference == "hvp":
        assert stats.step_size == 0.0 and stats.estimate_ok is None
    else:
        assert stats.step_size > 0 and stats.applied_cosine > 0.99 and stats.estimate_consistency >= 0
