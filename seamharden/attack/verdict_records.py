"""What a verdict records: its status, reasons, figures and per-attack assessments (report.json).

Both criteria kinds (``loss``, ``task``) fill the same ``Verdict``; figures a kind does not
compute stay None, and ``attacks`` holds ``AttackAssessment`` (loss) or ``TaskAssessment`` (task).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from seamharden.attack.results import ModelKind
from seamharden.recipe.schema import Criteria

Status = Literal["pass", "fail", "inconclusive"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class AttackAssessment(_Record):
    """How far one attack run got, measured against the base model's step 0 (loss criteria)."""

    attack: str
    model: ModelKind
    reference_harmful_loss: float
    reference_benign_loss: float
    bounded_gain: float
    bounded_step: int | None
    unbounded_gain: float
    first_collapse_step: int | None


class TaskAssessment(_Record):
    """One attack run read at its first success (task criteria): the first evaluation whose harmful
    success reaches ``criteria.task.success``, else its last evaluation."""

    attack: str
    model: ModelKind
    success_step: int | None
    read_step: int
    harmful_success: float | None
    benign_accuracy: float | None


class ControlAssessment(_Record):
    """One run of the benign fine-tuning control: does the model learn the held-out benign task, or collapse?

    ``collapsed``: the fine-tuned model (its last evaluation) is collapsed by the verdict's rule
    (``seamharden.attack.brittleness``); ``learns``: its final benign loss is below its start.
    """

    attack: str
    model: ModelKind
    benign_loss_start: float
    benign_loss_final: float
    benign_accuracy_start: float | None
    benign_accuracy_final: float | None
    learns: bool
    collapsed: bool


class Figures(_Record):
    """The numbers the verdict was decided on (None where they could not be computed or belong to the other kind)."""

    base_benign_loss: float | None = None
    hardened_benign_loss: float | None = None
    utility_drop: float | None = None
    base_benign_accuracy: float | None = None
    hardened_benign_accuracy: float | None = None
    base_worst_gain: float | None = None
    base_worst_attack: str | None = None
    hardened_bounded_gain: float | None = None
    hardened_bounded_attack: str | None = None
    hardened_bounded_step: int | None = None
    hardened_unbounded_gain: float | None = None
    bounded_ratio: float | None = None
    collapsed_attacks: int = 0
    accuracy_drop: float | None = None
    base_untaught_attacks: int | None = None
    base_forgetting_attacks: int | None = None
    base_worst_accuracy_after: float | None = None
    collapse_limit: float | None = None
    hardened_successful_attacks: int | None = None
    hardened_kept_skill_attacks: int | None = None
    brittle_controls: int | None = None
    sweep_trials: int | None = None


class Verdict(_Record):
    status: Status
    reasons: list[str]
    figures: Figures
    criteria: Criteria
    attacks: list[AttackAssessment | TaskAssessment] = []
    unmet: list[str] = []
    benign_control: list[ControlAssessment] = []


class ReasonLog:
    """The reason lines of a verdict in order, and those whose check failed (``Verdict.unmet``)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.unmet: list[str] = []

    def check(self, ok: bool, line: str) -> None:
        """Record a criterion's line; it is unmet when ``ok`` is false."""
        self.reasons.append(line)
        if not ok:
            self.unmet.append(line)

    def note(self, line: str) -> None:
        """Record a line that is not a criterion (a caveat)."""
        self.reasons.append(line)
