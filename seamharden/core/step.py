"""One SEAM step: the gradient of L_ul + alpha * L_up + beta * L_sd, left in ``p.grad``.

Pass order: adversarial forward -> g_a and grad L_ul (one forward, two backwards for the
lens variant; L_ul = -SFT reuses g_a exactly for ascent; with ``seam.unlearn_pass=perturbed``
an SFT forward/backward for g_a, and grad L_ul joins the estimator's perturbed adversarial
pass), alignment forward/backward -> alpha * grad L_up, benign forward/backward -> g_b,
then the estimator. Default (``hvp``, ``hvp_graph=reuse``, one process): g_a and g_b are
taken with their graphs (those two passes on sdpa's math kernel) and ONE backward through
both adds beta * grad cos, and grad L_ul with it (that backward traverses the adversarial forward anyway);
``hvp_graph=recompute``: per side one more forward + graph-building backward + double
backward; differences: two (forward) or four (central) perturbed passes, twice that
self-checked. The extra memory is the two buffers g_a and g_b (see
seamharden.core.estimator), plus, for ``hvp``, the twice-differentiated passes' graphs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from seamharden.core import gradvec
from seamharden.core.estimator import (
    DEFAULT_DIFFERENCE,
    DEFAULT_HVP_GRAPH,
    LOCAL,
    Autograd,
    StepPolicy,
    accumulate_exact_sim_gradient,
    accumulate_sim_gradient,
    consistency_passes,
    geometry,
    math_attention,
    replay_rng,
)
from seamharden.core.losses import UnlearnVariant, adversarial_losses, lm_loss

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SeamConfig:
    """Weights of the objective and the estimator's settings (mirrors the recipe's ``seam``)."""

    alpha: float = 1.0
    beta: float = 0.01
    unlearn_loss: UnlearnVariant = "bounded_lens"
    difference: str = DEFAULT_DIFFERENCE
    step_policy: str = "relative"
    epsilon: float = 1e-3
    relative_step: float | None = None
    self_check: bool = True
    lens_stride: int = 1
    hvp_graph: str = DEFAULT_HVP_GRAPH
    unlearn_pass: str = "own"

    @property
    def policy(self) -> StepPolicy:
        return StepPolicy(self.step_policy, self.difference, self.epsilon, self.relative_step, self.self_check)

    @classmethod
    def from_section(cls, seam) -> SeamConfig:
        """From the recipe's validated ``seam`` section (seamharden.recipe.schema.SeamSection)."""
        fields = cls.__dataclass_fields__
        return cls(**{name: getattr(seam, name) for name in fields})


@dataclass(frozen=True)
class SeamStepStats:
    """Per-term losses (fp32 scalars), the geometry of g_a and g_b, and the step used.

    ``loss_sd`` is cos(g_a, g_b) at the weights of this step; ``step_size`` is the
    finite-difference step h (0 for the exact ``hvp`` estimator, and when beta = 0 and no
    estimate was made). ``estimate_consistency`` is the estimator's self-check figure
    (checked finite differences; NaN for ``hvp``, unchecked ones and beta = 0): judge it
    with ``estimate_ok`` / ``seamharden.core.estimator.consistency_passes``. With
    ``seam.unlearn_pass=perturbed`` (beta != 0) ``loss_ul`` is L_ul where its gradient was taken: at
    theta + h u_a (central: the mean at theta +- h u_a).
    """

    loss_ul: float
    loss_up: float
    loss_sd: float
    loss_adv: float
    loss_bgn: float
    loss_total: float
    grad_norm_adv: float
    grad_norm_bgn: float
    cosine: float
    step_size: float
    applied_cosine: float
    estimate_consistency: float = math.nan

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def estimate_ok(self) -> bool | None:
        """The self-check's verdict: True, False (warn: the L_sd gradient is not trustworthy), None (not checked)."""
        return consistency_passes(self.estimate_consistency)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters SEAM updates: those with requires_grad (LoRA adapters only under peft)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return params


def keeps_graphs(cfg: SeamConfig, ops: Autograd = LOCAL) -> bool:
    """Whether the step takes g_a and g_b with their graphs and differentiates them once more
    (``seam.hvp_graph=reuse`` with the exact ``hvp`` estimator, beta != 0, single process)."""
    return (cfg.beta != 0.0 and cfg.difference == "hvp" and cfg.hvp_graph == "reuse"
            and ops.exact_hvp and ops.reuses_graph)


def folds_unlearning(cfg: SeamConfig) -> bool:
    """Whether grad L_ul is taken in the estimator's perturbed adversarial pass (``seam.unlearn_pass=perturbed``,
    beta != 0), at theta + h u_a (central: half at theta +- h u_a): one backward through the model fewer per
    step, a bias of O(h) in grad L_ul (central: O(h^2)).

    Raises ValueError for ``perturbed`` with anything but the bounded lens and an unchecked difference
    (the recipe's validation says so before a model loads)."""
    if cfg.unlearn_pass == "own":
        return False
    if cfg.unlearn_pass != "perturbed":
        raise ValueError(f"unknown seam.unlearn_pass {cfg.unlearn_pass!r}")
    if cfg.unlearn_loss != "bounded_lens" or cfg.difference == "hvp" or cfg.self_check:
        raise ValueError(f"unlearn_pass=perturbed cannot run with unlearn_loss={cfg.unlearn_loss}, "
                         f"difference={cfg.difference}, self_check={cfg.self_check}")
    return cfg.beta != 0.0


def _gradient(ops: Autograd, loss: torch.Tensor, params, keep: bool, retain_graph: bool = False):
    """grad(loss), with its graph when ``keep`` (then the forward's graph stays alive too)."""
    if keep:
        return ops.grad(loss, params, retain_graph=True, create_graph=True)
    return ops.grad(loss, params, retain_graph=retain_graph)


def _draw_seed() -> int:
    return int(torch.randint(0, 2**62, (1,)).item())


def seam_step(
    model: nn.Module,
    adv: Batch,
    aln: Batch,
    bgn: Batch,
    cfg: SeamConfig,
    grad_scale: float = 1.0,
    params: Sequence[nn.Parameter] | None = None,
    ops: Autograd = LOCAL,
) -> SeamStepStats:
    """Accumulate grad_scale * grad(L_ul + alpha L_up + beta L_sd) into ``p.grad``.

    ``grad_scale`` is 1 / (gradient-accumulation steps). Existing ``p.grad`` values are
    added to, not replaced: the caller zeroes them between optimizer steps. The dropout
    RNG is replayed so that each perturbed pass sees the masks of its unperturbed one.
    ``ops``: single-process autograd (default) or the FSDP2-sharded operations
    (``seamharden.distributed.sharded.ShardedAutograd``: each process holds its share of a
    global batch, losses are global token means and gradients sums over the ranks).
    ``cfg.unlearn_pass == "perturbed"``: grad L_ul comes from the estimator's perturbed adversarial
    pass(es) (``folds_unlearning``), not from theta.
    """
    params = list(params) if params is not None else trainable_parameters(model)
    seed_a, seed_b, seed_up = _draw_seed(), _draw_seed(), _draw_seed()

    bounded = cfg.unlearn_loss == "bounded_lens"
    keep = keeps_graphs(cfg, ops)
    fold = folds_unlearning(cfg)
    twice = math_attention if keep else contextlib.nullcontext  # passes whose graphs are differentiated twice

    def adversarial() -> tuple[torch.Tensor, torch.Tensor]:
        """(SFT loss, L_ul) on adv, global means, from one forward at the current weights."""
        sft, ul = adversarial_losses(model, adv, cfg.unlearn_loss, cfg.lens_stride)
        return ops.mean(sft, adv), ops.mean(ul, adv, bounded)

    def unlearn_at_theta() -> torch.Tensor:
        """p.grad += grad_scale * grad L_ul from a pass of its own at the current weights; returns L_ul."""
        with replay_rng(seed_a):
            ul = adversarial()[1]
        ops.backward(ul * grad_scale, params)
        return ul

    loss_ul = None
    if fold or (bounded and not ops.reuses_graph):  # g_a from an SFT pass
        with replay_rng(seed_a):
            loss_adv = ops.mean(lm_loss(model, adv), adv)
        g_a = ops.grad(loss_adv, params)
        if not fold:  # FSDP2: a second pass for L_ul (folded: L_ul joins the estimator's perturbed adversarial pass)
            loss_ul = unlearn_at_theta()
    else:
        with replay_rng(seed_a), twice():  # the backwards too: a checkpointed layer recomputes in them
            loss_adv, loss_ul = adversarial_losses(model, adv, cfg.unlearn_loss, cfg.lens_stride)
            loss_adv = ops.mean(loss_adv, adv)
            loss_ul = ops.mean(loss_ul, adv, bounded)
            if cfg.unlearn_loss == "ascent":
                g_a = _gradient(ops, loss_adv, params, keep)
                gradvec.accumulate_into_grads(params, [g.detach() for g in g_a], -grad_scale)
            else:
                g_a = _gradient(ops, loss_adv, params, keep, retain_graph=True)
                if not keep:  # else grad L_ul joins the double backward, which traverses this forward anyway
                    ops.backward(loss_ul * grad_scale, params)

    with replay_rng(seed_up), torch.set_grad_enabled(cfg.alpha != 0.0):
        loss_up = ops.mean(lm_loss(model, aln), aln)
    if cfg.alpha != 0.0:
        ops.backward(loss_up * (grad_scale * cfg.alpha), params)

    with replay_rng(seed_b), twice():
        loss_bgn = ops.mean(lm_loss(model, bgn), bgn)
        g_b = _gradient(ops, loss_bgn, params, keep)
    loss_adv, loss_bgn = loss_adv.detach(), loss_bgn.detach()

    if keep:
        also = [(loss_ul, grad_scale)] if cfg.unlearn_loss != "ascent" else []
        est = accumulate_exact_sim_gradient(params, g_a, g_b, scale=grad_scale * cfg.beta, also=also)
        norm_a, norm_b, cos, step, applied, consistency = est.norm_a, est.norm_b, est.cosine, 0.0, math.nan, math.nan
    elif cfg.beta != 0.0:
        est = accumulate_sim_gradient(
            params, g_a, g_b,
            loss_a=lambda: ops.mean(lm_loss(model, adv), adv), loss_b=lambda: ops.mean(lm_loss(model, bgn), bgn),
            seed_a=seed_a, seed_b=seed_b, scale=grad_scale * cfg.beta, policy=cfg.policy, ops=ops,
            fold_a=adversarial if fold else None, fold_scale=grad_scale,
        )
        norm_a, norm_b, cos, step, applied = est.norm_a, est.norm_b, est.cosine, est.step, est.applied_cosine
        consistency = est.consistency
        if fold and est.folded is not None:
            loss_ul = torch.tensor(est.folded, dtype=torch.float64)  # the value as measured, not re-rounded
    else:
        (norm_a, norm_b, cos), step, applied, consistency = geometry(g_a, g_b), 0.0, math.nan, math.nan
    del g_a, g_b
    if loss_ul is None:  # folded, but the estimator perturbed nothing (degenerate geometry): L_ul at theta
        loss_ul = unlearn_at_theta()

    ul, up = loss_ul.detach().item(), loss_up.item()
    return SeamStepStats(
        loss_ul=ul, loss_up=up, loss_sd=cos, loss_adv=loss_adv.item(), loss_bgn=loss_bgn.item(),
        loss_total=ul + cfg.alpha * up + cfg.beta * cos, grad_norm_adv=norm_a, grad_norm_bgn=norm_b,
        cosine=cos, step_size=step, applied_cosine=applied, estimate_consistency=consistency,
    )
