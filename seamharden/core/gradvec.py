"""Algebra on gradients stored as lists of tensors (one per trainable parameter).

Every reduction (dot, norm) is accumulated in fp32 whatever the tensors' dtype,
because bf16 sums over billions of elements lose all significant digits. Results
that are written back (``add_scaled_``) are computed in fp32 (fp64 for fp64 tensors) and
rounded once into the destination's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Vec = Sequence[torch.Tensor]


def _wide(t: torch.Tensor) -> torch.Tensor:
    """t in fp32, or in its own dtype where that is wider (fp64 stays fp64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def dot(xs: Vec, ys: Vec) -> torch.Tensor:
    """sum_i <x_i, y_i> as a 0-dim fp32 tensor."""
    total = torch.zeros((), dtype=torch.float32, device=xs[0].device)
    for x, y in zip(xs, ys, strict=True):
        total += torch.dot(x.reshape(-1).float(), y.reshape(-1).float()).to(total.device)
    return total


def norm(xs: Vec) -> torch.Tensor:
    """Euclidean norm of the concatenated vector, fp32 0-dim tensor."""
    return dot(xs, xs).sqrt()


def cosine(xs: Vec, ys: Vec, eps: float = 1e-30) -> torch.Tensor:
    """Cosine similarity of the concatenated vectors, fp32 0-dim tensor (0 if either is zero)."""
    denom = norm(xs) * norm(ys)
    return torch.where(denom > eps, dot(xs, ys) / denom.clamp_min(eps), torch.zeros_like(denom))


@torch.no_grad()
def add_scaled_(dst: Vec, src: Vec, alpha: float) -> None:
    """dst += alpha * src in place, computed in fp32 (fp64 for fp64) and rounded once into dst's dtype."""
    for d, s in zip(dst, src, strict=True):
        d.copy_(_wide(d).add_(_wide(s), alpha=alpha))


@torch.no_grad()
def accumulate_into_grads(params: Vec, src: Vec, alpha: float) -> None:
    """p.grad += alpha * src for every parameter (creating p.grad where it is None).

    The product is rounded once into the parameter dtype; with alpha = -1 it is an
    exact negation.
    """
    for p, s in zip(params, src, strict=True):
        if p.grad is None:
            p.grad = (_wide(s) * alpha).to(p.dtype) if alpha != -1.0 else -s.to(p.dtype)
        else:
            p.grad.copy_(_wide(p.grad).add_(_wide(s), alpha=alpha))
