"""Algebra on gradients stored as lists of tensors (one per trainable parameter).

Every reduction (dot, norm) is accumulated in fp32 whatever the tensors' dtype,
because bf16 sums over billions of elements lose all significant digits. Results
that are written back (``add_scaled_``) are computed in fp32 (fp64 for fp64 tensors) and
rounded once into the destination's dtype.

Sharded vectors (FSDP2: every tensor a DTensor sharded over a device mesh) take the same
code: each op works on the local shards (``local``) and the reductions add one all-reduce
of the per-rank partial sums (``reduce_over_shards``). Plain tensors skip both, so the
single-process results are unchanged bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch build without distributed support: nothing is ever sharded
    class DTensor:  # type: ignore[no-redef]
        """Stand-in: no tensor is an instance."""

Vec = Sequence[torch.Tensor]


def is_sharded(t: torch.Tensor) -> bool:
    """True for a DTensor (an FSDP2-sharded parameter or gradient)."""
    return isinstance(t, DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (a view: in-place writes reach the shard), or t itself."""
    return t.to_local() if isinstance(t, DTensor) else t


def reduce_over_shards(total: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum the per-rank partial ``total`` over the ranks holding shards of ``like`` (in place).

    Nothing for a plain tensor. Every placement must be a Shard (a replicated dimension would
    count its elements once per replica).
    """
    if isinstance(like, DTensor):
        if not all(placement.is_shard() for placement in like.placements):
            raise ValueError(f"partial sums need sharded placements only, got {like.placements}")
        torch.distributed.all_reduce(total, group=like.device_mesh.get_group())
    return total


def _wide(t: torch.Tensor) -> torch.Tensor:
    """t in fp32, or in its own dtype where that is wider (fp64 stays fp64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def dot(xs: Vec, ys: Vec) -> torch.Tensor:
    """sum_i <x_i, y_i> as a 0-dim fp32 tensor (over all shards for DTensors)."""
    total = torch.zeros((), dtype=torch.float32, device=local(xs[0]).device)
    for x, y in zip(xs, ys, strict=True):
        total += torch.dot(local(x).reshape(-1).float(), local(y).reshape(-1).float()).to(total.device)
    return reduce_over_shards(total, xs[0])


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
        d, s = local(d), local(s)
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
            g, s = local(p.grad), local(s)
            g.copy_(_wide(g).add_(_wide(s), alpha=alpha))
