"""The estimator's gradient of cos(g_a, g_b) next to an exact reference.

``exact_sim_gradient`` differentiates the cosine through a double backward in the
model's own dtype (run it on an fp64 copy with eager attention for a reference);
``estimated_sim_gradient`` runs the Hessian-free estimator alone (beta = 1, no other
term) exactly as a SEAM step does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seamharden.core import gradvec
from seamharden.core.estimator import (
    SimGradient,
    StepPolicy,
    accumulate_sim_gradient,
    replay_rng,
)
from seamharden.core.losses import lm_loss
from seamharden.core.step import trainable_parameters

Batch = dict[str, torch.Tensor]


def exact_sim_gradient(model: nn.Module, batch_a: Batch, batch_b: Batch, seed_a: int = 0,
                       seed_b: int = 1) -> list[torch.Tensor]:
    """d cos(g_a, g_b) / d theta by double backward, computed in the parameters' dtype."""
    params = trainable_parameters(model)
    with replay_rng(seed_a):
        g_a = torch.autograd.grad(lm_loss(model, batch_a), params, create_graph=True)
    with replay_rng(seed_b):
        g_b = torch.autograd.grad(lm_loss(model, batch_b), params, create_graph=True)
    dot = sum((x * y).sum() for x, y in zip(g_a, g_b, strict=True))
    norm_a = sum((x * x).sum() for x in g_a).sqrt()
    norm_b = sum((y * y).sum() for y in g_b).sqrt()
    return [g.detach() for g in torch.autograd.grad(dot / (norm_a * norm_b), params)]


def estimated_sim_gradient(model: nn.Module, batch_a: Batch, batch_b: Batch, policy: StepPolicy,
                           seed_a: int = 0, seed_b: int = 1) -> tuple[list[torch.Tensor], SimGradient]:
    """The estimator's d cos(g_a, g_b) / d theta, in the parameters' dtype; ``.grad`` is left empty."""
    params = trainable_parameters(model)
    for p in params:
        p.grad = None
    with replay_rng(seed_a):
        g_a = list(torch.autograd.grad(lm_loss(model, batch_a), params))
    with replay_rng(seed_b):
        g_b = list(torch.autograd.grad(lm_loss(model, batch_b), params))
    info = accumulate_sim_gradient(
        params, g_a, g_b, lambda: lm_loss(model, batch_a), lambda: lm_loss(model, batch_b),
        seed_a, seed_b, scale=1.0, policy=policy,
    )
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    for p in params:
        p.grad = None
    return grads, info


def agreement(estimate: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> dict[str, float]:
    """Cosine and relative L2 error ||e - r|| / ||r|| of two gradients, in fp32."""
    diff = [e.float() - r.float() for e, r in zip(estimate, reference, strict=True)]
    ref_norm = gradvec.norm(reference).item()
    return {
        "cosine": gradvec.cosine(estimate, reference).item(),
        "relative_error": gradvec.norm(diff).item() / ref_norm if ref_norm > 0 else float("inf"),
    }
