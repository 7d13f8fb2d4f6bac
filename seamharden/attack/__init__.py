"""Attack suite data: the attack grid, the results it produces, and the verdict on them."""

from seamharden.attack.grid import PAPER_GRID, SMOKE_GRID, attack_grid
from seamharden.attack.results import (
    SCHEMA_VERSION,
    AttackRun,
    EvalPoint,
    GradientSample,
    SuiteResult,
    attack_label,
    config_key,
)
from seamharden.attack.verdict import AttackAssessment, Figures, TaskAssessment, Verdict, verdict

__all__ = [
    "PAPER_GRID",
    "SCHEMA_VERSION",
    "SMOKE_GRID",
    "AttackAssessment",
    "AttackRun",
    "EvalPoint",
    "Figures",
    "GradientSample",
    "SuiteResult",
    "TaskAssessment",
    "Verdict",
    "attack_grid",
    "attack_label",
    "config_key",
    "verdict",
]
