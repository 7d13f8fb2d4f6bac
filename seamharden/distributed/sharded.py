"""FSDP2 sharding of a causal LM and the sharded operations of the SEAM step.

``shard_model`` applies ``fully_shard`` to every decoder layer and the root, with gradients
*summed* over ranks (divide factor 1): the losses are global token means, so each rank's
gradient is its share of the global one (``ShardedAutograd.mean``). ``ShardedAutograd`` plugs
into ``seamharden.core.step.seam_step(..., ops=...)``; the norms and dot products are the
shard-aware ones of ``seamharden.core.gradvec``. Memory per rank: the step's two gradient
buffers are sharded like the parameters (1/N of a weight-sized buffer each).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from seamharden.core.estimator import Autograd, replay_rng, sketch
from seamharden.core.losses import IGNORE_INDEX

SHARDING = "fsdp2-per-layer"
"""The sharding recorded in run headers and seamharden.json: FSDP2 (fully_shard) on every decoder
layer and on the root, parameters, gradients and the step's buffers sharded over one mesh dimension."""


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The modules sharded one by one: those whose class the model lists in ``_no_split_modules``
    (the decoder layer of every Hugging Face causal LM)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (no _no_split_modules)")
    return layers


def shard_model(model: nn.Module, mesh) -> list[nn.Module]:
    """Shard ``model`` in place (every decoder layer, then the root) over ``mesh``; returns the FSDP modules.

    Build the parameter list and the optimizer after this call: the parameters become DTensors.
    No mixed-precision policy is applied: a bf16 ``param_dtype`` all-gather rounds the
    finite-difference perturbation away (docs/distributed.md).
    """
    from torch.distributed.fsdp import FSDPModule, fully_shard

    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for module in modules:
        module.set_gradient_divide_factor(1.0)
        module.set_force_sum_reduction_for_comms(True)  # plain SUM (gloo has no PREMUL_SUM)
    return modules


def _labelled(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Number of labelled next-token targets in this rank's batch (the count ``response_loss`` averages over)."""
    return (batch["labels"][:, 1:] != IGNORE_INDEX).sum()


class ShardedAutograd(Autograd):
    """The SEAM step's operations on FSDP2-sharded parameters (``shard_model``).

    ``torch.autograd.grad`` returns nothing for sharded parameters, so gradients are taken
    with ``loss.backward()`` and read from ``p.grad`` (sharded DTensors, summed over ranks),
    with the step's accumulated ``p.grad`` set aside meanwhile (no copy). The exact ``hvp``
    estimator (double backward) is not available, nor a second backward through one graph
    (the bounded lens costs one more adversarial forward).
    """

    exact_hvp = False
    reuses_graph = False  # a second backward through a retained graph crashes once FSDP2 has resharded

    def __init__(self, fsdp_modules: Sequence[nn.Module]):
        self.fsdp_modules = list(fsdp_modules)

    def grad(self, loss, params, retain_graph=False):
        stash = [p.grad for p in params]
        for p in params:
            p.grad = None
        try:
            loss.backward(retain_graph=retain_graph)
            return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        finally:
            for p, g in zip(params, stash, strict=True):
                p.grad = g

    def backward(self, loss, params):
        loss.backward()

    def mean(self, loss, batch, bounded=False):
        """Global token mean with this rank's gradient share.

        The value is the mean over every rank's labelled tokens (one all-reduce of [sum, count]);
        the gradient flows only through this rank's part, (local sum) / (global count), so that the
        gradients summed over ranks are the gradient of the global mean. ``bounded``: ``loss`` is
        -log(1 + m) with m a token mean (the bounded lens); m is recovered, averaged, and mapped back.
        """
        m = torch.expm1(-loss) if bounded else loss
        count = _labelled(batch).to(torch.float32)
        part = m * count
        totals = torch.stack([part.detach().float(), count])
        dist.all_reduce(totals)
        share = part / totals[1]
        global_m = share + (totals[0] / totals[1] - share).detach()
        return -torch.log1p(global_m) if bounded else global_m

    def before_perturb(self):
        for module in self.fsdp_modules:
            module.reshard()

    def scaled_backward(self, loss_fn: Callable[[], torch.Tensor], params, coefficient: float, seed: int,
                        sketch_seed: int | None = None):
        """p.grad += coefficient * grad(loss_fn()); the self-check's sketch, if asked, is that of the
        increment of p.grad (sketches are linear; no hook reaches a sharded parameter's gradient)."""
        before = sketch(self._grads(params), sketch_seed) if sketch_seed is not None else None
        with replay_rng(seed):
            loss = loss_fn()
            (loss * coefficient).backward()
        if before is None:
            return None
        return (sketch(self._grads(params), sketch_seed) - before) / coefficient

    @staticmethod
    def _grads(params) -> list[torch.Tensor]:
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights gathered from the shards, in host memory on rank 0 (collective).

    Rank 0 gets every tensor in full on the CPU (one layer's worth on the device at a time); the
    other ranks get an empty dict. For writing the final model once.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
