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


def _grads_after(model, cfg, adv=ADV, bgn=BGN):
    params = trainable_parameters(model)
    for p in params:
        p.grad = None
    stats = seam_step(model, adv, ALN, bgn, cfg)
    return [p.grad.clone() for p in params], stats


def _lens_grad(model, params):
    torch.manual_seed(0)
    loss = adversarial_losses(model, ADV, "bounded_lens")[1]
    return loss.item(), torch.autograd.grad(loss, params)


def _norm(xs) -> float:
    return sum((x * x).sum() for x in xs).sqrt().item()


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_unlearn_pass_perturbed_takes_grad_ul_at_the_perturbed_weights(monkeypatch, difference):
    """seam.unlearn_pass=perturbed: the step's gradient is the own-pass one with grad L_ul(theta) swapped for
    grad L_ul at the weights of the estimator's perturbed adversarial pass (recorded there), in one backward fewer.

    The losses are fp32 (logits upcast) and the perturbed pass's backward carries k x grad L_adv with
    k ~ beta / h: at beta 0.5 its fp32 rounding, amplified by k, is a 1e-3 change in either form. At
    beta 1e-9 that rounding is negligible and the swap must account for the whole change."""
    import seamharden.core.step as step_module

    model = tiny("llama").double()
    params = trainable_parameters(model)
    base = dict(alpha=1.0, beta=1e-9, unlearn_loss="bounded_lens", difference=difference, self_check=False)
    own, own_stats = _grads_after(model, SeamConfig(**base))
    seen = []
    real = step_module.adversarial_losses

    def recording(m, batch, variant, stride=1):
        seen.append([p.detach().clone() for p in params])
        return real(m, batch, variant, stride)

    backwards = []
    handle = model.model.layers[0].register_full_backward_hook(lambda *a: backwards.append(1))
    monkeypatch.setattr(step_module, "adversarial_losses", recording)
    folded, stats = _grads_after(model, SeamConfig(**base, unlearn_pass="perturbed"))
    monkeypatch.undo()
    handle.remove()
    # central folds half of grad L_ul into the pass at theta + h u_a and half into the one at theta - h u_a
    assert len(seen) == (1 if difference == "forward" else 2)
    assert len(backwards) == (5 if difference == "forward" else 7)  # own pass: 6 / 8
    at_theta = [p.detach().clone() for p in params]
    for weights in seen:  # theta + h u_a (and theta - h u_a)
        assert max((a - b).abs().max().item() for a, b in zip(weights, at_theta, strict=True)) > 0
    ul_theta, g_theta = _lens_grad(model, params)
    ul_moved, g_moved = [], []
    for weights in seen:
        with torch.no_grad():
            for p, w in zip(params, weights, strict=True):
                p.copy_(w)
        value, grad = _lens_grad(model, params)
        ul_moved.append(value)
        g_moved.append(grad)
    with torch.no_grad():
        for p, w in zip(params, at_theta, strict=True):
            p.copy_(w)
    mean_moved = [sum(gs) / len(gs) for gs in zip(*g_moved, strict=True)]
    want = [o - a + b for o, a, b in zip(own, g_theta, mean_moved, strict=True)]
    change = _norm([f - o for f, o in zip(folded, own, strict=True)])
    assert change > 1e-7 * _norm(own)  # the swap is visible ...
    assert _norm([f - w for f, w in zip(folded, want, strict=True)]) < 0.01 * change  # ... and is all of the change
    assert stats.loss_ul == pytest.approx(sum(ul_moved) / len(ul_moved), rel=1e-12)
    assert own_stats.loss_ul == pytest.approx(ul_theta, rel=1e-12)
    assert stats.loss_ul == pytest.approx(own_stats.loss_ul, rel=1e-4)  # fp32 values: often the same
    assert stats.cosine == own_stats.cosine and stats.loss_adv == own_stats.loss_adv
    strong = dict(base, beta=0.5)
    own, _ = _grads_after(model, SeamConfig(**strong))
    folded, _ = _grads_after(model, SeamConfig(**strong, unlearn_pass="perturbed"))
    assert _norm([f - o for f, o in zip(folded, own, strict=True)]) < 5e-3 * _norm(own)


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_unlearn_pass_perturbed_scales_with_gradient_accumulation(difference):
    model = tiny("llama").double()
    cfg = SeamConfig(alpha=1.0, beta=0.5, unlearn_loss="bounded_lens", difference=difference, self_check=False,
                     unlearn_pass="perturbed")
    whole, _ = _grads_after(model, cfg)
    params = trainable_parameters(model)
    for p in params:
        p.grad = None
    for _ in range(4):
        seam_step(model, ADV, ALN, BGN, cfg, grad_scale=0.25)
    for p, g in zip(params, whole, strict=True):
        assert torch.allclose(p.grad, g, rtol=1e-9, atol=1e-12 * g.abs().max().item())


def test_unlearn_pass_perturbed_falls_back_to_theta_when_nothing_is_perturbed():
    """adv = bgn: g_a = g_b, the estimate is degenerate (no perturbed pass), and L_ul is taken at theta;
    beta 0: the own pass, bit for bit."""
    model = tiny("llama").double()
    base = dict(alpha=1.0, beta=0.5, unlearn_loss="bounded_lens", difference="forward", self_check=False)
    own, own_stats = _grads_after(model, SeamConfig(**base), bgn=ADV)
    folded, stats = _grads_after(model, SeamConfig(**base, unlearn_pass="perturbed"), bgn=ADV)
    assert stats.step_size > 0 and stats.loss_ul == own_stats.loss_ul
    for a, b in zip(folded, own, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
    zero = dict(base, beta=0.0)
    own0, _ = _grads_after(model, SeamConfig(**zero))
    folded0, _ = _grads_after(model, SeamConfig(**zero, unlearn_pass="perturbed"))
    assert all(torch.equal(a, b) for a, b in zip(folded0, own0, strict=True))


@pytest.mark.parametrize("bad", [dict(difference="hvp"), dict(self_check=True), dict(unlearn_loss="ascent")])
def test_unlearn_pass_perturbed_refuses_what_it_cannot_fold(bad):
    cfg = dict(beta=0.5, unlearn_loss="bounded_lens", difference="forward", self_check=False, unlearn_pass="perturbed")
    with pytest.raises(ValueError, match="unlearn_pass=perturbed"):
        seam_step(tiny("llama"), ADV, ALN, BGN, SeamConfig(**{**cfg, **bad}))
