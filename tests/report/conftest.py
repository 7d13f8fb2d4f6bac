"""A synthetic attack suite shaped like a real one: SEAM holds at low lr, collapses at high lr."""

import numpy as np
import pytest

from seamharden.attack import AttackRun, EvalPoint, GradientSample, SuiteResult, attack_grid, verdict
from seamharden.recipe.schema import AttackSection, Criteria


def _points(harm, benign, refusal, acc):
    return [EvalPoint(step=5 * i, harmful_loss=float(h), benign_loss=float(b), refusal_rate=float(r),
                      benign_accuracy=float(a))
            for i, (h, b, r, a) in enumerate(zip(harm, benign, refusal, acc, strict=True))]


def make_suite(gradients=True):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 5)
    runs = []
    for cfg in attack_grid(AttackSection(budget="smoke")):
        k = cfg.lr / 1e-4
        runs.append(AttackRun(config=cfg, model="base", points=_points(
            3.0 - 1.5 * np.minimum(1, k) * t, 2.0 + 0.05 * t, 0.9 - 0.8 * t, 0.5 - 0.02 * t)))
        collapse = 2.0 + 8.0 * max(0.0, k - 1) * t**2
        runs.append(AttackRun(config=cfg, model="hardened", points=_points(
            3.2 - 0.2 * t - 2.0 * max(0.0, k - 1) * t**2, collapse, 0.95 - 0.1 * t, 0.48 - 0.3 * (collapse > 4))))
    grads = []
    if gradients:
        grads = [GradientSample(model=m, stream=s, vectors=(rng.normal(size=(12, 16)) + sign).tolist())
                 for m, sign_adv in (("base", 0.5), ("hardened", 2.0))
                 for s, sign in (("adv", sign_adv), ("bgn", -sign_adv if m == "hardened" else 0.4))]
    return SuiteResult(base_model="org/base", hardened_model="org/base-seam", budget="smoke", runs=runs,
                       gradients=grads, fidelity={"cosine_vs_exact": 0.97}, extra={"seconds": 12.5})


@pytest.fixture(scope="session")
def suite_factory():
    return make_suite


@pytest.fixture(scope="module")
def suite():
    return make_suite()


@pytest.fixture(scope="module")
def suite_verdict(suite):
    return verdict(suite, Criteria())
