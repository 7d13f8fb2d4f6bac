"""Hessian-free estimate of the gradient of L_sd = cos(g_a, g_b), with a runtime self-check.

With gbar = g / ||g|| and c = gbar_a . gbar_b (see docs/method.md):

    grad cos = H_a v_a + H_b v_b,   v_a = (gbar_b - c gbar_a) / ||g_a||,
                                    v_b = (gbar_a - c gbar_b) / ||g_b||

and each Hessian-vector product is taken along the unit direction u = v / ||v||:

    forward:  H v ~ ||v|| (g(theta + h u) - g(theta)) / h                (1 extra pass per side)
    central:  H v ~ ||v|| (g(theta + h u) - g(theta - h u)) / (2h)      (2 extra passes per side)
    hvp:      H v = ||v|| grad(g(theta) . u)  by double backward          (exact; ~3 passes' cost per side,
              ~2 of them for the double backward alone, which is all that ``accumulate_exact_sim_gradient``
              runs when g_a and g_b were taken with their graphs: ``seam.hvp_graph=reuse``)

Memory: besides the parameters and their ``.grad`` (which receives the result), the
estimate uses exactly the two buffers that hold g_a and g_b: they are turned into
u_a and u_b in place, and (differences) each then stores the saved weights during its
perturbed pass(es), which makes the restore bit-exact; the elementwise algebra on them runs
slice by slice through a few MiB of reused fp32 scratch (``CHUNK_ELEMENTS``). ``hvp`` holds one more
weight-sized transient (the gradient with its graph) during each double backward;
``accumulate_exact_sim_gradient`` none (g_a and g_b themselves carry the graphs, and the
activations of both passes stay alive until its one backward).

Step policies (differences only): ``absolute`` uses h = epsilon (the reference code's
behaviour, kept for comparison); ``relative`` (default) uses h = rho * ||theta|| with a
per-(dtype, difference) rho measured on trained and random tiny models.

Self-check (``StepPolicy.check``, differences only): each side's difference is also
taken at h/2 (one more pass per perturbed pass); the mean of the two estimates is
applied, and both are sketched by SKETCH_PROBES random-sign projections per parameter
tensor as their gradients arrive (``sketch``: no weight-sized buffer). ``consistency`` =
max over a, b of |E_h - E_h/2| / (|E_h| + |E_h/2|): small where the difference is in its
linear regime, large when the step is too large for the curvature or lost in rounding.
See ``consistency_passes`` and docs/method.md.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from seamharden.core import gradvec

Difference = Literal["forward", "central", "hvp"]
Policy = Literal["relative", "absolute"]

DEFAULT_DIFFERENCE: Difference = "hvp"
"""The default estimator: the exact Hessian-vector product. On trained tiny models every
fixed finite-difference step fails somewhere (too large for the curvature, or lost in bf16
rounding); the exact product has no step to get wrong (docs/benchmarks.md). With
``hvp_graph=reuse`` a step costs about 8x an SFT step on CPU (llama-small), less than
self-checked ``central``; unchecked ``forward`` is the fastest and not faithful in bf16."""

HvpGraph = Literal["reuse", "recompute"]

DEFAULT_HVP_GRAPH: HvpGraph = "reuse"
"""How a SEAM step gets the graphs the exact ``hvp`` differentiates (``seam.hvp_graph``):
``reuse`` takes g_a and g_b with ``create_graph=True`` in the passes that compute them and
runs one double backward through both (``accumulate_exact_sim_gradient``); ``recompute``
takes them without graphs and recomputes each side (a forward + a create_graph backward
more per side, ``accumulate_sim_gradient``), holding one side's graph at a time. Same
values; reuse is cheaper in passes and holds both graphs at once (docs/method.md)."""

DEFAULT_RELATIVE_STEP: dict[tuple[torch.dtype, str], float] = {
    (torch.float64, "forward"): 1e-6,
    (torch.float64, "central"): 1e-4,
    (torch.float32, "forward"): 1e-5,
    (torch.float32, "central"): 1e-4,
    (torch.bfloat16, "forward"): 1e-3,
    (torch.bfloat16, "central"): 1e-3,
    (torch.float16, "forward"): 2.5e-4,
    (torch.float16, "central"): 2.5e-4,
}
"""rho per (weight dtype, difference) for the relative policy, chosen by measured fidelity
against fp64 double backward on trained and random tiny Llama, GPT-2, Qwen2 and GPT-NeoX
models (benchmarks/fidelity_sweep.py, docs/benchmarks.md). fp16 and fp64: not measured."""

CONSISTENCY_THRESHOLD = 0.1
"""Largest ``consistency``, |E_h - E_h/2| / (|E_h| + |E_h/2|) (sketched), a checked
finite-difference estimate may show and pass. On the trained and random tiny models of
docs/benchmarks.md no estimate at or below it had cosine < 0.95 to the exact gradient;
some good bf16 estimates score above it (the check is conservative)."""


def consistency_passes(consistency: float) -> bool | None:
    """The self-check's verdict on a step's ``estimate_consistency``: True (passes), False
    (fails: the L_sd gradient of this step is not trustworthy), None (not checked: the
    exact ``hvp`` estimator, an unchecked difference, or beta = 0, all reported as NaN)."""
    if math.isnan(consistency):
        return None
    return consistency <= CONSISTENCY_THRESHOLD


@dataclass(frozen=True)
class StepPolicy:
    """Which Hessian-vector product, and (differences) how far to move the weights.

    ``check`` (differences only): also take the difference at h/2 (one more pass per
    perturbed pass), apply the mean of the two estimates, and report their disagreement
    as ``SimGradient.consistency``.
    """

    kind: Policy = "relative"
    difference: Difference = DEFAULT_DIFFERENCE
    epsilon: float = 1e-3
    relative_step: float | None = None
    check: bool = True

    def step_size(self, params: Sequence[torch.Tensor]) -> float:
        """The step h, an L2 distance in parameter space (0 for the exact ``hvp``)."""
        if self.difference == "hvp":
            return 0.0
        if self.kind == "absolute":
            return self.epsilon
        rho = self.relative_step
        if rho is None:
            rho = DEFAULT_RELATIVE_STEP[(params[0].dtype, self.difference)]
        return rho * gradvec.norm(params).item()


@dataclass(frozen=True)
class SimGradient:
    """Diagnostics of one estimate. ``applied_cosine``: cos(applied perturbation, h u), mean of a and b
    (NaN for ``hvp``, which perturbs nothing);
    ``consistency``: the self-check figure (checked differences; NaN otherwise);
    ``folded``: the value of the loss folded into side a's perturbed pass(es) (``fold_a``; their mean for
    central differences; None when none ran)."""

    cosine: float
    norm_a: float
    norm_b: float
    step: float
    applied_cosine: float
    consistency: float = math.nan
    folded: float | None = None


@contextlib.contextmanager
def replay_rng(seed: int) -> Iterator[None]:
    """Run a pass with the global RNG seeded to ``seed``, restoring the RNG afterwards.

    Passes at theta and at theta + h u replay the same seed, so dropout draws the same
    masks and only the weights differ between them.
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def geometry(g_a: Sequence[torch.Tensor], g_b: Sequence[torch.Tensor]) -> tuple[float, float, float]:
    """(||g_a||, ||g_b||, cos(g_a, g_b)), all accumulated in fp32."""
    norm_a = gradvec.norm(g_a).item()
    norm_b = gradvec.norm(g_b).item()
    if norm_a == 0.0 or norm_b == 0.0:
        return norm_a, norm_b, 0.0
    return norm_a, norm_b, gradvec.dot(g_a, g_b).item() / (norm_a * norm_b)


SKETCH_PROBES = 4
"""Random-sign probes per parameter tensor in the self-check's sketch of a gradient."""


def _probes(p: torch.Tensor, index: int, seed: int) -> torch.Tensor:
    """[SKETCH_PROBES, p.numel()] fp32 random signs for parameter tensor ``index``, the same on every call."""
    gen = torch.Generator(device=p.device).manual_seed((seed + 1_000_003 * index) % 2**63)
    signs = torch.randint(0, 2, (SKETCH_PROBES, p.numel()), generator=gen, device=p.device, dtype=torch.int8)
    return signs.float().mul_(2).sub_(1)


def sketch(vec: Sequence[torch.Tensor], seed: int) -> torch.Tensor:
    """Random-sign sketch of a gradient, [n_tensors * SKETCH_PROBES] fp32; |sketch(x)| ~ |x| (in expectation).

    Sharded (DTensor) vectors: each rank projects its shards with its own signs (``shard_seed``)
    and the partial sketches are summed over the ranks.
    """
    parts = [_probes(gradvec.local(x), i, shard_seed(x, seed)) @ gradvec.local(x).reshape(-1).float()
             for i, x in enumerate(vec)]
    return gradvec.reduce_over_shards(torch.cat(parts), vec[0]) / math.sqrt(SKETCH_PROBES)


def shard_seed(x: torch.Tensor, seed: int) -> int:
    """The probes' seed for this rank's shard of ``x``: ``seed`` itself for a plain tensor."""
    if not gradvec.is_sharded(x):
        return seed
    return seed + 7_919 * (x.device_mesh.get_rank() + 1)


CHUNK_ELEMENTS = 1 << 18
"""Elements per slice in the estimator's elementwise algebra (1 MiB of fp32): each chain of
ops runs on one slice at a time through small reused fp32 buffers that stay in cache, instead
of allocating weight-sized temporaries per tensor. Every op and its operands are the ones the
per-tensor formulas name, so the results are the same bits; on a CPU, where each large fresh
temporary costs page faults, this made the fp32 ``forward`` step on a SmolLM2 shape ~10 % faster."""


class _Scratch:
    """Reused fp32 buffers, ``n`` of them, each at least as large as the slices asked for."""

    def __init__(self, n: int, like: torch.Tensor):
        self.pool = torch.empty(n, CHUNK_ELEMENTS, dtype=torch.float32, device=like.device)

    def take(self, i: int, like: torch.Tensor) -> torch.Tensor:
        """Buffer i shaped like ``like`` (a fresh tensor when ``like`` is larger than a slice)."""
        if like.numel() > CHUNK_ELEMENTS:
            return torch.empty(like.shape, dtype=torch.float32, device=like.device)
        return self.pool[i, :like.numel()].view(like.shape)


def _slices(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Matching flat slices of CHUNK_ELEMENTS elements of every (local) pair x_i, y_i, as views (in-place
    writes reach the tensors); a pair whole where either tensor is not contiguous."""
    for x, y in zip(xs, ys, strict=True):
        x, y = gradvec.local(x), gradvec.local(y)
        if not (x.is_contiguous() and y.is_contiguous()):
            yield x, y
            continue
        x, y = x.view(-1), y.view(-1)
        for start in range(0, x.numel(), CHUNK_ELEMENTS):
            yield x[start:start + CHUNK_ELEMENTS], y[start:start + CHUNK_ELEMENTS]


def _as_fp32(t: torch.Tensor, scratch: _Scratch, i: int) -> torch.Tensor:
    """t itself if fp32, else its fp32 copy in scratch buffer i (``t.float()``)."""
    return t if t.dtype == torch.float32 else scratch.take(i, t).copy_(t)


@torch.no_grad()
def _to_unit_directions(buf_a, buf_b, norm_a: float, norm_b: float, c: float, s: float,
                        sketch_seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Overwrite (g_a, g_b) with (u_a, u_b) in place, in fp32: u_a = (gbar_b - c gbar_a) / s,
    u_b = (gbar_a - c gbar_b) / s with gbar = g / ||g||, slice by slice (``_slices``).

    With ``sketch_seed``: first returns the self-check's sketches of g_a(theta), g_b(theta).
    """
    sketches = (sketch(buf_a, sketch_seed), sketch(buf_b, sketch_seed)) if sketch_seed is not None else None
    scratch = _Scratch(3, gradvec.local(buf_a[0]))
    for a, b in _slices(buf_a, buf_b):
        ga = torch.div(_as_fp32(a, scratch, 0), norm_a, out=scratch.take(0, a))
        gb = torch.div(_as_fp32(b, scratch, 1), norm_b, out=scratch.take(1, b))
        for dst, first, second in ((a, gb, ga), (b, ga, gb)):  # dst = (first - c second) / s
            tmp = torch.mul(second, c, out=scratch.take(2, dst))
            dst.copy_(torch.sub(first, tmp, out=tmp).div_(s))
    return sketches


@torch.no_grad()
def _perturb(params, direction, h: float) -> float:
    """theta <- theta + h u; the direction buffer then holds the saved theta.

    Returns cos(applied perturbation, u) accumulated in fp32: it falls towards 0 when
    the step is swallowed by the dtype's rounding.
    """
    sums = torch.zeros(3, dtype=torch.float32, device=gradvec.local(params[0]).device)
    scratch = _Scratch(3, gradvec.local(params[0]))
    for p, u in _slices(params, direction):
        u32, p32 = _as_fp32(u, scratch, 0), _as_fp32(p, scratch, 2)
        moved = scratch.take(1, p)
        moved = torch.add(p32, torch.mul(u32, h, out=moved), out=moved)  # p.float() + h * u32
        applied = moved.to(p.dtype)  # moved itself for fp32: the weights' rounding of theta + h u
        delta = torch.sub(applied, p32, out=scratch.take(2, p))  # in fp32
        sums[0] += torch.dot(delta.reshape(-1), u32.reshape(-1))
        sums[1] += torch.dot(delta.reshape(-1), delta.reshape(-1))
        sums[2] += torch.dot(u32.reshape(-1), u32.reshape(-1))
        u.copy_(p)
        p.copy_(applied)
    dot, applied_sq, intended_sq = gradvec.reduce_over_shards(sums, params[0]).tolist()
    denom = math.sqrt(applied_sq * intended_sq)
    return dot / denom if denom > 0 else 0.0


@torch.no_grad()
def _mirror(params, saved) -> None:
    """theta + d  ->  theta - d, with d the perturbation actually applied (fp32 arithmetic)."""
    scratch = _Scratch(2, gradvec.local(params[0]))
    for p, theta in _slices(params, saved):
        twice = torch.mul(_as_fp32(theta, scratch, 0), 2, out=scratch.take(0, p))
        p.copy_(torch.sub(twice, _as_fp32(p, scratch, 1), out=twice))


@torch.no_grad()
def _halve(params, saved) -> None:
    """theta + d  ->  theta + d/2 (fp32 arithmetic, rounded once): the check's second step."""
    scratch = _Scratch(2, gradvec.local(params[0]))
    for p, theta in _slices(params, saved):
        total = torch.add(_as_fp32(theta, scratch, 0), _as_fp32(p, scratch, 1), out=scratch.take(0, p))
        p.copy_(total.div_(2))


@torch.no_grad()
def _restore(params, saved) -> None:
    """Bit-exact restore from the saved copy (same dtype)."""
    for p, theta in zip(params, saved, strict=True):
        gradvec.local(p).copy_(gradvec.local(theta))


class Autograd:
    """How the step differentiates and averages, on one process (the default).

    The sharded counterpart, ``seamharden.distributed.sharded.ShardedAutograd`` (FSDP2), overrides
    every method: the SEAM algorithm (``accumulate_sim_gradient``, ``seamharden.core.step.seam_step``)
    is the same code for both, only these operations and gradvec's reductions differ.
    """

    exact_hvp = True
    """Whether ``seam.difference=hvp`` (double backward) is available."""
    reuses_graph = True
    """Whether two backward passes may run through one forward's graph (``retain_graph``): the
    bounded lens then takes g_a and grad L_ul from one adversarial forward, else from two."""

    def grad(self, loss: torch.Tensor, params, retain_graph: bool = False,
             create_graph: bool = False) -> list[torch.Tensor]:
        """The gradient of ``loss`` w.r.t. ``params`` as new tensors; ``p.grad`` is left as it was.

        ``create_graph`` (only where ``exact_hvp``): the gradient keeps its graph, for
        ``accumulate_exact_sim_gradient``."""
        return list(torch.autograd.grad(loss, params, retain_graph=retain_graph, create_graph=create_graph))

    def backward(self, loss: torch.Tensor, params, retain_graph: bool = False) -> None:
        """p.grad += grad(loss) for ``params`` only (``retain_graph`` only where ``exact_hvp``)."""
        torch.autograd.backward(loss, inputs=list(params), retain_graph=retain_graph)

    def mean(self, loss: torch.Tensor, batch: dict[str, torch.Tensor], bounded: bool = False) -> torch.Tensor:
        """The loss of the whole (global) batch from this process's token-mean ``loss``: itself here.

        ``bounded``: ``loss`` is -log(1 + m) of a token mean m (the bounded lens), not a mean itself.
        """
        return loss

    def before_perturb(self) -> None:
        """Called before the weights are perturbed in place (FSDP2: reshard, so the next forward sees it)."""

    def hvp_backward(self, loss_fn: Callable[[], torch.Tensor], params, direction, coefficient: float,
                     seed: int) -> None:
        """p.grad += coefficient * H u, exact (``_hvp_backward``); FSDP2 overrides it."""
        _hvp_backward(loss_fn, params, direction, coefficient, seed)

    def scaled_backward(self, loss_fn: Callable[[], torch.Tensor], params, coefficient: float, seed: int,
                        sketch_seed: int | None = None) -> torch.Tensor | None:
        """p.grad += coefficient * grad(loss_fn()) at the current weights, with replayed RNG.

        With ``sketch_seed``: also returns ``sketch`` of the unscaled gradient, formed by
        per-parameter hooks as each gradient arrives (no weight-sized buffer).
        """
        sketched, handles = None, []
        if sketch_seed is not None:
            sketched = torch.zeros(len(params), SKETCH_PROBES, dtype=torch.float32, device=params[0].device)
            for i, p in enumerate(params):
                def probe(grad, i=i, p=p):
                    with torch.no_grad():
                        sketched[i] = _probes(p, i, sketch_seed) @ grad.reshape(-1).float() / coefficient
                handles.append(p.register_hook(probe))
        try:
            with replay_rng(seed):
                loss = loss_fn()
                self.backward(loss * coefficient, params)
        finally:
            for handle in handles:
                handle.remove()
        return sketched.reshape(-1) / math.sqrt(SKETCH_PROBES) if sketched is not None else None


LOCAL = Autograd()
"""The single-process operations."""


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """sdpa on its math kernel only (the twice-differentiable one), restoring the backend flags after.

    Sets the global flags rather than ``torch.nn.attention.sdpa_kernel``: a checkpointed
    layer's recompute during backward ignores the latter and picks the flash kernel again.
    """
    backends = torch.backends.cuda
    saved = (backends.flash_sdp_enabled(), backends.mem_efficient_sdp_enabled(), backends.cudnn_sdp_enabled(),
             backends.math_sdp_enabled())
    try:
        backends.enable_flash_sdp(False)
        backends.enable_mem_efficient_sdp(False)
        backends.enable_cudnn_sdp(False)
        backends.enable_math_sdp(True)
        yield
    finally:
        for setter, value in zip((backends.enable_flash_sdp, backends.enable_mem_efficient_sdp,
                                  backends.enable_cudnn_sdp, backends.enable_math_sdp), saved, strict=True):
            setter(value)


def _hvp_backward(loss_fn: Callable[[], torch.Tensor], params, direction, coefficient: float, seed: int) -> None:
    """p.grad += coefficient * H u (exact, double backward), H the Hessian of loss_fn at the current weights.

    Runs sdpa on its math kernel (``math_attention``), the one that is twice differentiable;
    eager attention works as is, FlashAttention-2 does not. Works with non-reentrant
    gradient checkpointing.
    """
    with replay_rng(seed), math_attention():
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        along = sum((g * u).sum(dtype=torch.float32) for g, u in zip(grads, direction, strict=True))
        del grads
        torch.autograd.backward(along * coefficient, inputs=list(params))


def accumulate_exact_sim_gradient(params: Sequence[torch.Tensor], g_a: list[torch.Tensor],
                                  g_b: list[torch.Tensor], scale: float,
                                  also: Sequence[tuple[torch.Tensor, float]] = ()) -> SimGradient:
    """p.grad += scale * grad cos(g_a, g_b), exact, by ONE backward through the graphs of g_a and g_b.

    ``also``: (scalar loss, coefficient) pairs whose gradients join the same backward
    (p.grad += coefficient * grad loss): a loss on the forward that g_a came from (the
    bounded lens' L_ul) then costs no backward of its own through the model, as the
    double backward traverses that forward's graph anyway.

    ``g_a``, ``g_b``: the gradients of the two losses at the current weights, taken with
    ``create_graph=True`` (the passes that computed them ran under ``math_attention``; with
    dropout, their masks are the ones the estimate differentiates, nothing is replayed).
    The backward of the roots g_a and g_b with grad_tensors (k_a u_a, k_b u_b) is the
    vector-Jacobian product k_a H_a u_a + k_b H_b u_b = grad cos (module docstring): the
    roots' values are not read by it, so their storage is CONSUMED, overwritten in place
    with those directions (no weight-sized buffer beyond g_a and g_b; an op that had saved
    a root would make autograd raise, not compute a wrong value). The graphs are freed by
    the backward. Per step this replaces ``hvp``'s two recomputing passes (forward +
    create_graph backward each) with nothing: only the double backward remains.
    """
    with torch.no_grad():
        buf_a, buf_b = [g.detach() for g in g_a], [g.detach() for g in g_b]
        norm_a, norm_b, c = geometry(buf_a, buf_b)
        s = math.sqrt(max(0.0, 1.0 - c * c))
        degenerate = norm_a == 0.0 or norm_b == 0.0 or s < 1e-6 or scale == 0.0
        if not degenerate:
            _to_unit_directions(buf_a, buf_b, norm_a, norm_b, c, s)
            torch._foreach_mul_(buf_a, scale * s / norm_a)
            torch._foreach_mul_(buf_b, scale * s / norm_b)
    # a gradient that does not depend on the weights (no graph) has a zero Hessian block
    roots = [] if degenerate else [(g, k) for g, k in zip(g_a + g_b, buf_a + buf_b, strict=True) if g.requires_grad]
    roots += [(loss, torch.tensor(k, dtype=loss.dtype, device=loss.device)) for loss, k in also]
    if roots:
        with math_attention():  # a checkpointed layer recomputed here must take the math kernel too
            torch.autograd.backward([g for g, _ in roots], grad_tensors=[k for _, k in roots], inputs=list(params))
    return SimGradient(c, norm_a, norm_b, 0.0, applied_cosine=math.nan)  # nothing is perturbed


HVP_UNAVAILABLE = ("seam.difference=hvp needs double backward, which these operations (ops.exact_hvp false) do "
                   "not support; use seam.difference=central (self-checked finite differences)")


def disagreement(x: torch.Tensor, y: torch.Tensor) -> float:
    """|x - y| / (|x| + |y|) in [0, 1] (0 when both are zero)."""
    denom = (x.norm() + y.norm()).item()
    return (x - y).norm().item() / denom if denom > 0 else 0.0


def accumulate_sim_gradient(
    params: Sequence[torch.Tensor],
    g_a: list[torch.Tensor],
    g_b: list[torch.Tensor],
    loss_a: Callable[[], torch.Tensor],
    loss_b: Callable[[], torch.Tensor],
    seed_a: int,
    seed_b: int,
    scale: float,
    policy: StepPolicy = StepPolicy(),
    ops: Autograd = LOCAL,
    fold_a: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
    fold_scale: float = 0.0,
) -> SimGradient:
    """p.grad += scale * (estimate of grad cos(g_a, g_b)) for every trainable parameter.

    ``g_a``, ``g_b``: gradients of ``loss_a``, ``loss_b`` at the current weights, computed
    with the RNG seeded to ``seed_a`` / ``seed_b`` (same dtype and shapes as ``params``).
    They are CONSUMED: overwritten with the directions (and, for the differences, then the
    saved weights). The weights are restored bit-exactly before returning, also on error.
    ``ops``: the single-process operations, or the sharded ones (FSDP2).

    ``fold_a`` (differences without the self-check only): returns (the value of ``loss_a``, an
    extra scalar loss) from ONE forward at the current weights. Side a's perturbed pass then
    backpropagates k * loss_a + ``fold_scale`` * extra, so p.grad also receives ``fold_scale`` x the
    extra loss's gradient, taken at theta + h u_a instead of theta (O(h)), without a backward of its
    own; central differences fold half of it into the pass at theta + h u_a and half into the one at
    theta - h u_a (the mean is theta's gradient to O(h^2), the difference's own order)
    (``seam.unlearn_pass=perturbed``: the bounded lens' L_ul; docs/method.md). Its value comes back
    as ``SimGradient.folded``; None when no perturbed pass ran (degenerate geometry, scale 0): the
    caller then takes the extra loss at theta itself.
    """
    if policy.difference == "hvp" and not ops.exact_hvp:
        raise ValueError(HVP_UNAVAILABLE)
    if fold_a is not None and (policy.difference == "hvp" or policy.check):
        raise ValueError("fold_a needs an unchecked finite difference (forward or central, check off): the "
                         "self-check's sketch would include the folded loss's gradient")
    if fold_a is not None and fold_scale == 0.0:
        raise ValueError("fold_a without fold_scale would drop the folded loss's gradient")
    norm_a, norm_b, c = geometry(g_a, g_b)
    h = policy.step_size(params)
    s = math.sqrt(max(0.0, 1.0 - c * c))
    if norm_a == 0.0 or norm_b == 0.0 or s < 1e-6 or scale == 0.0:
        return SimGradient(c, norm_a, norm_b, h, applied_cosine=float("nan"))

    if policy.difference == "hvp":
        _to_unit_directions(g_a, g_b, norm_a, norm_b, c, s)
        for direction, loss_fn, k, seed in ((g_a, loss_a, scale * s / norm_a, seed_a),
                                            (g_b, loss_b, scale * s / norm_b, seed_b)):
            ops.hvp_backward(loss_fn, params, direction, k, seed)
        return SimGradient(c, norm_a, norm_b, h, applied_cosine=math.nan)  # nothing is perturbed

    central = policy.difference == "central"
    steps = (h, h / 2) if policy.check else (h,)
    weight = 1.0 / len(steps)
    sketch_seed = seed_a if policy.check else None
    norms = (norm_a, norm_b)
    if not central:
        for buf, norm in ((g_a, norm_a), (g_b, norm_b)):
            gradvec.accumulate_into_grads(params, buf, -sum(weight * scale * s / (norm * t) for t in steps))
    at_theta = _to_unit_directions(g_a, g_b, norm_a, norm_b, c, s, None if central else sketch_seed)

    applied, sides, folded = [], [], []

    share = 0.5 if central else 1.0  # central: half at theta + h u_a, half at theta - h u_a

    def folded_loss_a(k: float) -> Callable[[], torch.Tensor]:
        """loss_a + extra * share * fold_scale / k: a backward of k x it adds share x fold_scale x grad extra."""
        def loss() -> torch.Tensor:
            main, extra = fold_a()
            folded.append(extra.detach().float().item())
            return main + extra * (share * fold_scale / k)
        return loss

    for i, (direction, loss_fn, seed) in enumerate(((g_a, loss_a, seed_a), (g_b, loss_b, seed_b))):
        ops.before_perturb()
        applied.append(_perturb(params, direction, h))
        estimates = []
        try:
            for j, t in enumerate(steps):
                k = weight * scale * s / (norms[i] * (2 * t if central else t))
                if j:
                    ops.before_perturb()
                    _halve(params, direction)
                sign = -1.0 if central and j % 2 else 1.0  # central, checked: h at +, -; then h/2 at -, +
                fold = fold_a is not None and i == 0  # unchecked only: j is 0
                first = ops.scaled_backward(folded_loss_a(sign * k) if fold else loss_fn, params, sign * k, seed,
                                            sketch_seed)
                if central:
                    ops.before_perturb()
                    _mirror(params, direction)
                    second = ops.scaled_backward(folded_loss_a(-sign * k) if fold else loss_fn, params, -sign * k,
                                                 seed, sketch_seed)
                    if sketch_seed is not None:
                        estimates.append(sign * (first - second) / (2 * t))
                elif sketch_seed is not None:
                    estimates.append((first - at_theta[i]) / t)
        finally:
            ops.before_perturb()
            _restore(params, direction)
        if len(estimates) == 2:
            sides.append(disagreement(*estimates))
    consistency = max(sides) if sides else math.nan
    return SimGradient(c, norm_a, norm_b, h, applied_cosine=sum(applied) / 2, consistency=consistency,
                       folded=sum(folded) / len(folded) if folded else None)
