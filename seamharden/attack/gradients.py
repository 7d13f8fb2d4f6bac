"""Per-batch gradients of D_adv and D_bgn, randomly projected to a few dimensions for the PCA plot.

The projection is a count sketch (each weight adds ``±g_i`` to one of ``dims`` buckets), a sparse
Johnson-Lindenstrauss map that preserves inner products in expectation and costs O(#weights),
so it also runs on a 7B model. Bucket and sign of a weight are drawn from a generator seeded by
the parameter's name and the sketch seed, so two models with the same architecture (base and
hardened) get the same projection.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch

from seamharden.core.losses import lm_loss
from seamharden.data import collate, to_device

CHUNK = 1 << 24


def _generator(device: torch.device, name: str, chunk: int, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(zlib.crc32(f"{seed}/{name}/{chunk}".encode()))
    return gen


def project(named_grads: Sequence[tuple[str, torch.Tensor]], dims: int, seed: int = 0) -> torch.Tensor:
    """Count-sketch of the concatenated gradients: fp32 ``[dims]`` on the gradients' device."""
    out = None
    for name, grad in named_grads:
        flat = grad.detach().reshape(-1)
        if out is None:
            out = torch.zeros(dims, dtype=torch.float32, device=flat.device)
        for c, start in enumerate(range(0, flat.numel(), CHUNK)):
            part = flat[start:start + CHUNK].float()
            gen = _generator(flat.device, name, c, seed)
            bucket = torch.randint(0, dims, (part.numel(),), generator=gen, device=flat.device)
            sign = torch.randint(0, 2, (part.numel(),), generator=gen, device=flat.device).float().mul_(2).sub_(1)
            out.index_add_(0, bucket, part * sign)
    if out is None:
        raise ValueError("no gradients to project")
    return out


def gradient_vectors(model, examples: Sequence[dict], pad_token_id: int, *, batches: int, batch_size: int,
                     dims: int = 128, seed: int = 0) -> list[list[float]]:
    """Projected gradient of the response loss for each of the first ``batches`` batches of ``examples``.

    The model's gradients are cleared before and after; its train/eval mode is kept (dropout off
    during sampling so that the vectors are deterministic).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    vectors = []
    try:
        for b in range(batches):
            chunk = examples[b * batch_size:(b + 1) * batch_size]
            if not chunk:
                break
            model.zero_grad(set_to_none=True)
            batch = to_device(collate(chunk, pad_token_id), device)
            lm_loss(model, batch).backward()
            named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
            vectors.append(project(named, dims, seed).cpu().tolist())
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return vectors
