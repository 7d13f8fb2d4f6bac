"""A hardening run that has stopped learning: the gradient exactly zero, or the model predicting uniformly.

A learning rate far too large can throw the weights, in one step, to a point where every
logit is the same: the cross-entropy is then exactly ln(vocab) on every batch and every
gradient is exactly zero (measured: ``protect --recipe tiny train.lr=1e4`` on a tiny Llama,
from step 2 on). Nothing is non-finite, so the divergence check alone lets such a run finish
and be saved as hardened. ``StallWatch`` sees it from the per-step statistics.

Thresholds: ``STALL_STEPS`` consecutive steps, and a benign loss within ``UNIFORM_MARGIN``
(relative) of ln(vocab). Random-weight tiny models (Llama, GPT-2, Qwen2; vocabulary 320) come
no closer than 1.4e-4 relative in a 100-step tiny-recipe run; the collapsed run sits within 1e-7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STALL_STEPS = 3
"""Consecutive stalled steps after which the run is stopped (one or two may be a fluke)."""
UNIFORM_MARGIN = 1e-5
"""|loss_bgn - ln V| / ln V at or under which the model is taken to predict uniformly over V tokens."""


@dataclass
class StallWatch:
    """Counts consecutive stalled steps of a run over a vocabulary of ``vocab`` tokens.

    ``update(record)`` takes a step's statistics (``grad_norm``, ``loss_bgn``: Python floats) and
    returns a one-phrase reason once ``STALL_STEPS`` consecutive steps stalled, else None.
    ``first`` is the first step (1-based, as passed to ``update``) of the current streak: the
    weights it started from, written after step ``first - 1``, are already the collapsed ones.
    """

    vocab: int
    zero_steps: int = 0
    uniform_steps: int = 0
    first: int | None = None

    @property
    def stalling(self) -> bool:
        """True while a streak is running (not yet long enough to stop)."""
        return self.first is not None

    def update(self, step: int, record: dict) -> str | None:
        log_v = math.log(self.vocab)
        zero = record["grad_norm"] == 0.0
        uniform = abs(record["loss_bgn"] - log_v) <= UNIFORM_MARGIN * log_v
        self.zero_steps = self.zero_steps + 1 if zero else 0
        self.uniform_steps = self.uniform_steps + 1 if uniform else 0
        streak = max(self.zero_steps, self.uniform_steps)
        self.first = step - streak + 1 if streak else None
        if self.zero_steps >= STALL_STEPS:
            return f"the combined gradient norm has been exactly 0 for {self.zero_steps} steps"
        if self.uniform_steps >= STALL_STEPS:
            return (f"the benign loss has sat at the uniform-prediction level ln({self.vocab}) = {log_v:.4f} "
                    f"for {self.uniform_steps} steps")
        return None


def output_vocab(model) -> int:
    """The number of logits per position (the LM head's rows; ``config.vocab_size`` without a head)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return int(model.config.vocab_size)
