"""report.json / report.md with the benign fine-tuning control and an attack sweep: written, read back, shown."""

from seamharden.attack import AttackRun, EvalPoint, verdict
from seamharden.attack.results import SweepRecord, SweepTrial
from seamharden.recipe.schema import AttackConfig, Criteria, SweepSpace
from seamharden.report import load_report, write_report


def _control(model, benign, acc):
    pts = [EvalPoint(step=5 * i, harmful_loss=3.0, benign_loss=b, benign_accuracy=a)
           for i, (b, a) in enumerate(zip(benign, acc, strict=True))]
    return AttackRun(config=AttackConfig(lr=2e-4, samples=40, steps=10), model=model, points=pts)


def test_report_shows_and_round_trips_control_and_sweep(suite_factory, tmp_path):
    result = suite_factory(gradients=False)
    result.benign_control = [_control("base", [2.0, 1.8, 1.6], [0.5, 0.55, 0.6]),
                             _control("hardened", [2.1, 3.0, 4.6], [0.48, 0.3, 0.1])]
    trials = [SweepTrial(number=i, params={"lr": r.config.lr}, score=0.1 * i, run=r)
              for i, r in enumerate(result.runs_of("hardened")[:2])]
    result.sweep = SweepRecord(trials=2, seed=0, objective="capability-bounded harmful gain",
                               space=SweepSpace().model_dump(mode="json"), history=trials, best={"hardened": 1})
    v = verdict(result, Criteria())
    assert v.status == "fail" and v.figures.brittle_controls == 1 and v.figures.sweep_trials == 2
    write_report(result, v, tmp_path, title="t", base_model="org/base", recipe_name="r")
    doc = load_report(tmp_path)
    assert doc.results.benign_control == result.benign_control and doc.results.sweep == result.sweep
    assert doc.verdict.benign_control == v.benign_control and doc.verdict.figures.brittle_controls == 1
    md = (tmp_path / "report.md").read_text()
    assert "## Benign fine-tuning control" in md and "Brittle (collapsed where the base was not): **1** of 1" in md
    row = "| hardened | full/adamw lr=2e-04 n=40 steps=10 | 0 5 10 | 2.1 → 3 → 4.6 | 0.480 → 0.300 → 0.100 | NO | YES |"
    assert row in md
    assert "## Attack sweep" in md and f"worst case found on the hardened: trial 1, `{trials[1].run.label}`" in md
    assert any("BRITTLE" in r for r in v.unmet)


def test_report_without_control_or_sweep_has_neither_section(suite_factory, tmp_path):
    result = suite_factory(gradients=False)
    write_report(result, verdict(result, Criteria()), tmp_path, title="t", base_model="b", recipe_name="r")
    md = (tmp_path / "report.md").read_text()
    assert "Benign fine-tuning control" not in md and "Attack sweep" not in md
