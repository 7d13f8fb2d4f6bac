"""Measure how faithful the SEAM estimator is on a given model, and save the evidence.

Around ``seamharden.core.fidelity``: builds an adversarial and a benign batch from
the built-in sets, runs the estimator in the model's dtype, computes a reference
(exact double backward in fp64 with eager attention for small models, fp32 central
differences above ``exact_max_params``) on an upcast copy of the SAME weights, and
writes ``batches.safetensors``, ``grads.safetensors`` and ``fidelity.json``.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from seamharden.core.estimator import DEFAULT_RELATIVE_STEP, StepPolicy
from seamharden.core.fidelity import agreement, estimated_sim_gradient, exact_sim_gradient
from seamharden.data import collate, encode_example, load_builtin, pad_id

Batch = dict[str, torch.Tensor]

EXACT_MAX_PARAMS = 50_000_000
"""Above this many trainable parameters the fp64 double backward is replaced by fp32 central differences."""

REFERENCE_DIFF_STEP = DEFAULT_RELATIVE_STEP[(torch.float32, "central")]
"""rho of the fp32 central-difference reference (h = rho * ||theta||)."""

EXACT_REFERENCE = "fp64-double-backward"
DIFF_REFERENCE = "fp32-central-difference"


@dataclass(frozen=True)
class FidelityReport:
    """One comparison of the estimator with its reference (what the CLI prints and saves)."""

    cosine: float
    relative_error: float
    step: float
    applied_cosine: float
    sim: float
    reference: str
    dtype: str
    difference: str
    policy: str
    epsilon: float
    relative_step: float | None
    parameters: int
    seed: int
    consistency: float = float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FidelityRun:
    """The report with the tensors behind it (for ``save_fidelity``)."""

    report: FidelityReport
    batch_a: Batch
    batch_b: Batch
    names: list[str]
    estimate: list[torch.Tensor]
    reference: list[torch.Tensor]


def build_batches(tokenizer, examples: int = 4, max_length: int = 48, seed: int = 0) -> tuple[Batch, Batch]:
    """(adversarial batch, benign batch) of ``examples`` built-in rows each, picked with ``seed``.

    Labels are -100 on prompt and padding; the response and its EOS are learned.
    """
    rng = random.Random(seed)
    batches = []
    for name in ("adv", "bgn"):
        rows = rng.sample(load_builtin(name), examples)
        encoded = [encode_example(tokenizer, r["prompt"], r["response"], max_length=max_length) for r in rows]
        batches.append(collate(encoded, pad_id(tokenizer)))
    return batches[0], batches[1]


def named_trainable(model: nn.Module) -> list[str]:
    """Names of the trainable parameters, in the order ``trainable_parameters`` returns them."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def upcast_copy(model: nn.Module, dtype: torch.dtype, attn_implementation: str | None = None) -> nn.Module:
    """A copy of ``model`` with the same weights upcast to ``dtype``, in eval mode."""
    ref = copy.deepcopy(model).to(dtype)
    if attn_implementation is not None:
        ref.set_attn_implementation(attn_implementation)
    return ref.eval()


def _on(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) for k, v in batch.items()}


def reference_gradient(model: nn.Module, batch_a: Batch, batch_b: Batch, seed: int,
                       exact_max_params: int = EXACT_MAX_PARAMS) -> tuple[list[torch.Tensor], str]:
    """(reference grad of cos(g_a, g_b), kind) on an upcast copy of ``model``'s weights."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n <= exact_max_params:
        ref = upcast_copy(model, torch.float64, "eager")
        grads = exact_sim_gradient(ref, batch_a, batch_b, seed, seed + 1)
        kind = EXACT_REFERENCE
    else:
        ref = upcast_copy(model, torch.float32)
        policy = StepPolicy("relative", "central", relative_step=REFERENCE_DIFF_STEP)
        grads, _ = estimated_sim_gradient(ref, batch_a, batch_b, policy, seed, seed + 1)
        kind = DIFF_REFERENCE
    del ref
    return grads, kind


def measure_fidelity(model: nn.Module, batch_a: Batch, batch_b: Batch, policy: StepPolicy, seed: int = 0,
                     exact_max_params: int = EXACT_MAX_PARAMS) -> FidelityRun:
    """Estimator (in the model's dtype, eval mode) against the reference; the model's weights are unchanged."""
    model.eval()
    device = next(model.parameters()).device
    batch_a, batch_b = _on(batch_a, device), _on(batch_b, device)
    dtype = next(p for p in model.parameters() if p.requires_grad).dtype
    estimate, info = estimated_sim_gradient(model, batch_a, batch_b, policy, seed, seed + 1)
    estimate = [e.float() for e in estimate]
    reference, kind = reference_gradient(model, batch_a, batch_b, seed, exact_max_params)
    scores = agreement(estimate, reference)
    names = named_trainable(model)
    report = FidelityReport(
        cosine=scores["cosine"], relative_error=scores["relative_error"], step=info.step,
        applied_cosine=info.applied_cosine, sim=info.cosine, reference=kind, dtype=str(dtype).removeprefix("torch."),
        difference=policy.difference, policy=policy.kind,
        epsilon=policy.epsilon, relative_step=_rho(policy, dtype), parameters=sum(e.numel() for e in estimate),
        seed=seed, consistency=info.consistency,
    )
    return FidelityRun(report, batch_a, batch_b, names, estimate, reference)


def _rho(policy: StepPolicy, dtype: torch.dtype) -> float | None:
    if policy.kind != "relative" or policy.difference == "hvp":
        return None
    if policy.relative_step is not None:
        return policy.relative_step
    return DEFAULT_RELATIVE_STEP[(dtype, policy.difference)]


def save_fidelity(run: FidelityRun, directory: str | Path) -> list[Path]:
    """Write batches.safetensors, grads.safetensors and fidelity.json into ``directory`` (created)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    batches = {f"{side}_{key}": t.detach().cpu().contiguous()
               for side, batch in (("a", run.batch_a), ("b", run.batch_b)) for key, t in batch.items()}
    grads = {}
    for name, e, r in zip(run.names, run.estimate, run.reference, strict=True):
        grads[f"estimate.{name}"] = e.detach().float().cpu().contiguous()
        grads[f"reference.{name}"] = r.detach().cpu().contiguous()
    paths = [directory / "batches.safetensors", directory / "grads.safetensors", directory / "fidelity.json"]
    save_file(batches, str(paths[0]))
    save_file(grads, str(paths[1]))
    paths[2].write_text(json.dumps(run.report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return paths
