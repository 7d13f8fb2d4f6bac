"""FSDP2 sharding of a causal LM and the sharded operations of the SEAM step.

``shard_model`` applies ``fully_shard`` to every decoder layer and the root, with gradients
*summed* over ranks (divide factor 1): the losses are global token means, so each rank's
gradient is its share of the global one (``ShardedAutograd.mean``). ``ShardedAutograd`` plugs
into ``seamharden.core.step.seam_step(..., ops=...)``; the norms and dot products are the
shard-aware ones of ``seamharden.core.gradvec``. Memory per rank: the step's two gradient
buffers are sharded like the parameters (1/N of a weight-sized buffer each); the exact ``hvp``
(``ShardedAutograd.hvp_backward``) holds one weight-sized gradient in full during its double backward.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from seamharden.core.estimator import Autograd, math_attention, replay_rng, sketch
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
    estimator runs per side as on one process with ``seam.hvp_graph=recompute`` (``hvp_backward``);
    a second backward through one retained graph does not (so ``reuse`` runs as ``recompute``, and
    the bounded lens costs one more adversarial forward).
    """

    exact_hvp = True
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

    def hvp_backward(self, loss_fn: Callable[[], torch.Tensor], params, direction, coefficient: float,
                     seed: int) -> None:
        """p.grad += coefficient * H u, exact, with H the Hessian of the global loss (summed over ranks).

        Each rank differentiates its share of ``loss_fn()`` twice with respect to the *gathered*
        parameters FSDP2 uses in its passes (``_GatheredParameters``): a graph-building backward
        whose gradients are, one tensor at a time as they arrive, dotted with the matching tensor of
        ``direction`` (gathered for that one product, ``_GatheredDot``) and dropped, then a backward of
        the sum of those dots, i.e. this rank's H_r u, which FSDP2's reduce-scatter sums into the
        sharded ``p.grad``. The twice-differentiated graph refers to the gathered weights, whose
        memory FSDP2 frees after each layer; ``_GatheredParameters.regathered`` gathers a module
        again when that backward reads them (one module at a time). Memory per rank, besides the
        sharded buffers: one parameter tensor's full gradient and direction at a time in the first
        backward; in the second, every layer's weight gradient in full until FSDP2 reduce-scatters
        that layer (autograd runs the differentiated backward's nodes first, and their contributions
        wait for the forward's), i.e. one weight-sized buffer, not sharded (measured,
        docs/distributed.md). The private API it needs is isolated in ``_GatheredParameters``
        (checked on torch 2.13).
        """
        gathered = _GatheredParameters(self.fsdp_modules, params)
        with replay_rng(seed), math_attention():
            try:
                loss = loss_fn()
            finally:
                gathered.remove_hooks()
            tensors = gathered.tensors()
            dots, handles = [], []
            for p, u in zip(tensors, direction, strict=True):
                def dot(p, u=u):
                    dots.append(_GatheredDot.apply(p.grad, u))
                    p.grad = None  # FSDP2 then reduce-scatters nothing for the first backward
                handles.append(p.register_post_accumulate_grad_hook(dot))
            try:
                with gathered.regathered(), warnings.catch_warnings():
                    # the reference cycle it warns of (parameter <-> graph-carrying .grad) is broken in `dot`
                    warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
                    loss.backward(create_graph=True, inputs=tensors)
            finally:
                for handle in handles:
                    handle.remove()
            del loss, tensors
            self.before_perturb()  # reshard every module: the second backward starts from a known state
            along = torch.stack(dots).sum() * coefficient
            dots.clear()
            try:
                along.backward()  # FSDP2's post-backward hooks reduce-scatter the H_r u into p.grad
            finally:
                self.before_perturb()

    @staticmethod
    def _grads(params) -> list[torch.Tensor]:
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


class _GatheredDot(torch.autograd.Function):
    """<g, u> in fp32 with g a full (gathered) tensor and u a DTensor shard of the same parameter;
    u is gathered for the product and again in the backward, never kept in full."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, u) -> torch.Tensor:
        ctx.u = u
        return (g.float() * u.full_tensor().float()).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (grad * ctx.u.full_tensor().float()).to(ctx.u.dtype), None


class _GatheredParameters:
    """The gathered (unsharded) parameter tensors FSDP2 uses in the next forward, matching ``params``.

    Each FSDP module's forward pre-hook (run after FSDP2's own, which gathers) records, by name, its
    parameters that are not DTensors then; ``tensors()`` (after the forward and ``remove_hooks``)
    returns them, and ``owner`` maps each one's storage to its FSDP module. That FSDP2 registers the
    gathered tensors as the module's parameters during its forward is an implementation detail;
    the storage key (``untyped_storage()._cdata``) is private API: FSDP2 frees and refills that same
    storage when it reshards and gathers. Checked on torch 2.13 (CPU, gloo).
    """

    def __init__(self, fsdp_modules: Sequence[nn.Module], params):
        from torch.distributed.tensor import DTensor

        self.found: dict[int, torch.Tensor] = {}
        self.owner: dict[int, nn.Module] = {}
        self.count = len(params)
        wanted = {id(p): i for i, p in enumerate(params)}
        self.handles = []
        for module in fsdp_modules:
            sharded_ids = {name: id(p) for name, p in module.named_parameters()}

            def record(mod, args, sharded_ids=sharded_ids):
                for name, p in mod.named_parameters():
                    index = wanted.get(sharded_ids.get(name))
                    if index is not None and not isinstance(p, DTensor):
                        self.found[index] = p
                        self.owner[p.untyped_storage()._cdata] = mod

            self.handles.append(module.register_forward_pre_hook(record))

    def remove_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()

    def tensors(self) -> list[torch.Tensor]:
        if len(self.found) != self.count:
            raise RuntimeError(f"found {len(self.found)} of {self.count} gathered parameters in the forward")
        return [self.found[i] for i in range(self.count)]

    @contextlib.contextmanager
    def regathered(self) -> Iterator[None]:
        """Saved-tensor hooks for a graph-building backward: a tensor it saves that views gathered
        weights is unpacked (in the later backward through that graph) after gathering its FSDP
        module again (``unshard``; the module these hooks gathered before is resharded), since FSDP2
        has freed that memory meanwhile. Every rank runs the same graph, so the collectives match."""
        active: list[nn.Module] = []

        def pack(t: torch.Tensor):
            module = self.owner.get(t.untyped_storage()._cdata)
            return (module, t) if module is not None else t

        def unpack(packed):
            if not isinstance(packed, tuple):
                return packed
            module, t = packed
            if module not in active:
                module.unshard()
                while active:
                    active.pop().reshard()
                active.append(module)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights gathered from the shards, in host memory on rank 0 (collective).

    Rank 0 gets every tensor in full on the CPU (one layer's worth on the device at a time); the
    other ranks get an empty dict. For writing the final model once.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
