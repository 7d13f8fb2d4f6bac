"""The utility budget's rules: is a validation score within budget, and the next anchor weight.

Pure functions of numbers; the controller that applies them at run time is
``seamharden.train.utility``.
"""

from __future__ import annotations

import math
from typing import Literal

Metric = Literal["loss", "exact_match"]


def within_budget(value: float, start: float, tolerance: float, metric: Metric) -> bool:
    """True when ``value`` is within ``tolerance`` of the ``start`` score.

    ``loss`` (lower is better) is relative: ``value <= start * (1 + tolerance)``;
    ``exact_match`` (a share in [0, 1], higher is better) is absolute: ``value >= start - tolerance``.
    A non-finite value is never within budget.
    """
    if not math.isfinite(value):
        return False
    if metric == "loss":
        return value <= start * (1.0 + tolerance)
    if metric == "exact_match":
        return value >= start - tolerance
    raise ValueError(f"unknown utility metric {metric!r}")


def next_anchor_weight(weight: float, within: bool, *, raise_by: float, lower_by: float, floor: float,
                       top: float) -> float:
    """A lighter anchor while within budget (never below ``floor``), a heavier one when not (at most ``top``)."""
    return max(floor, weight - lower_by) if within else min(top, weight + raise_by)
