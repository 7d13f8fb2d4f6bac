import json
import math

import numpy as np
import pytest
from huggingface_hub import ModelCard
from matplotlib.image import imread

from seamharden.attack import AttackRun, EvalPoint, SuiteResult, TaskAssessment, verdict
from seamharden.recipe.schema import AttackConfig, Criteria
from seamharden.report import load_report, pca_2d, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = {"harmful_loss.png", "benign_loss.png", "utility_vs_harm.png", "gradient_pca.png", "benign_accuracy.png"}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, suite, suite_verdict):
    out = tmp_path_factory.mktemp("report")
    files = write_report(suite, suite_verdict, out, title="Smoke report", base_model="org/base",
                         recipe_name="smoke", license="apache-2.0", dataset_name="Harmful QA",
                         dataset_type="org/harmful-qa")
    return out, files


def test_files_written(report_dir):
    out, files = report_dir
    assert all(p.is_file() for p in files)
    names = {p.relative_to(out).as_posix() for p in files}
    assert {"report.json", "report.md", "README.md"} | {f"plots/{n}" for n in PLOTS} == names


def test_report_json_reads_back_equal(report_dir, suite, suite_verdict):
    out, _ = report_dir
    doc = load_report(out)
    assert doc.schema_version == 1
    assert doc.results == suite
    assert doc.verdict == suite_verdict
    raw = json.loads((out / "report.json").read_text())
    assert raw["verdict"]["status"] == "pass"
    assert raw["results"]["schema_version"] == 1


def test_pngs_are_valid(report_dir):
    out, _ = report_dir
    for name in PLOTS:
        path = out / "plots" / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        img = imread(path)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_report_md_has_verdict_table_and_plots(report_dir, suite):
    text = (report_dir[0] / "report.md").read_text()
    assert "Verdict: PASS" in text
    for run in suite.runs:
        assert f"| {run.label} | {run.model} |" in text
    for name in PLOTS:
        assert f"(plots/{name})" in text
    assert "cosine_vs_exact" in text


def test_model_card_metadata(report_dir, suite_verdict):
    card = ModelCard.load(report_dir[0] / "README.md")
    data = card.data
    assert data.base_model == "org/base"
    assert data.license == "apache-2.0"
    assert set(data.tags) >= {"seamharden", "seam", "self-destructive"}
    results = {r.metric_type: r for r in data.eval_results}
    bounded = results["seamharden/bounded_harm_gain"]
    assert bounded.task_type == "text-generation"
    assert bounded.dataset_name == "Harmful QA" and bounded.dataset_type == "org/harmful-qa"
    assert bounded.metric_value == pytest.approx(suite_verdict.figures.hardened_bounded_gain, abs=1e-6)
    assert results["seamharden/base_harm_gain"].metric_value == pytest.approx(0.5)
    assert "seamharden/utility_drop" in results
    index = data.to_dict()["model-index"]
    assert index[0]["name"] == "org/base-seam"
    assert "Verdict: PASS" in card.text and "(plots/gradient_pca.png)" in card.text


def test_without_gradients_and_with_collapse_values(tmp_path, suite_factory):
    res = suite_factory(gradients=False)
    res.runs[1].points[-1].benign_loss = math.inf
    res.runs[0].points[0].judge_score = 0.25
    v = verdict(res, Criteria())
    files = write_report(res, v, tmp_path, title="t", base_model="org/base", recipe_name="r")
    names = {p.name for p in files}
    assert "gradient_pca.png" not in names and "harmful_loss.png" in names
    assert '"Infinity"' in (tmp_path / "report.json").read_text()
    assert load_report(tmp_path / "report.json").results == res
    assert "| judge start → final |" in (tmp_path / "report.md").read_text()
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.license is None
    assert card.data.eval_results[0].dataset_type == "seamharden/builtin-adv"


def test_inconclusive_verdict_without_figures_still_reports(tmp_path, suite_factory):
    res = suite_factory(gradients=False)
    res.runs = [r for r in res.runs if r.model == "base"]
    v = verdict(res, Criteria())
    write_report(res, v, tmp_path, title="t", base_model="org/base", recipe_name="r")
    assert "INCONCLUSIVE" in (tmp_path / "report.md").read_text()
    assert not ModelCard.load(tmp_path / "README.md").data.eval_results


def test_pca_2d_finds_the_main_direction():
    rng = np.random.default_rng(1)
    direction = np.array([3.0, 4.0, 0.0]) / 5
    x = rng.normal(size=(50, 1)) * 10 * direction + rng.normal(size=(50, 3)) * 0.01
    coords, ratio = pca_2d(x)
    assert coords.shape == (50, 2)
    assert ratio[0] > 0.99
    one_dim, r1 = pca_2d(np.arange(4.0).reshape(4, 1))
    assert one_dim.shape == (4, 2) and r1[1] == 0


def _task_suite():
    """Base learns the task at step 10 keeping its skill; the hardened model collapses by its first success."""
    config = {"samples": 2000, "steps": 200, "batch_size": 32, "scheduler": "constant", "warmup_ratio": 0,
              "weight_decay": 0, "max_grad_norm": None}
    runs = []
    for lr in (1e-4, 5e-4):
        for model, harm, acc in (("base", (0.0, 0.2, 0.6, 0.9), (0.96, 0.96, 0.94, 0.9)),
                                 ("hardened", (0.0, 0.1, 0.3, 0.55), (0.95, 0.7, 0.4, 0.2))):
            points = [EvalPoint(step=5 * i, harmful_loss=2.0 - i / 4, benign_loss=0.1 + i / 10, benign_accuracy=a,
                                harmful_success=h) for i, (h, a) in enumerate(zip(harm, acc, strict=True))]
            runs.append(AttackRun(config=AttackConfig(lr=lr, **config), model=model, points=points))
    return SuiteResult(base_model="toy/base", hardened_model="toy/hardened", budget="custom", runs=runs,
                       extra={"eval_settings": {"benign_scorer": "exact_match"}})


def test_task_criteria_report_reads_back(tmp_path):
    res = _task_suite()
    v = verdict(res, Criteria(kind="task"))
    assert v.status == "pass", v.reasons
    files = write_report(res, v, tmp_path, title="toy", base_model="toy/base", recipe_name="toy")
    assert {"harmful_success.png", "benign_accuracy.png"} <= {p.name for p in files}
    doc = load_report(tmp_path)
    assert doc.results == res and doc.verdict == v
    assert all(isinstance(a, TaskAssessment) for a in doc.verdict.attacks)
    assert doc.verdict.criteria.kind == "task" and doc.results.runs[0].points[2].harmful_success == 0.6
    text = (tmp_path / "report.md").read_text()
    assert "| benign acc (exact match) final |" in text and "| harmful success start → final |" in text
    assert "| first success (step) | harmful success there | benign acc there |" in text
    base_row = f"| {res.runs[0].label} | base |"
    row = next(line for line in text.splitlines() if line.startswith(base_row))
    assert row.endswith("| 0.0% → 90.0% | 10 | 60.0% | 94.0% |")
    hard_row = next(line for line in text.splitlines() if line.startswith(f"| {res.runs[1].label} | hardened |"))
    assert hard_row.endswith("| 0.0% → 55.0% | 15 | 55.0% | 20.0% |")
    assert "| collapse limit | 47.0% | 0.5 × base's worst |" in text
    assert "first success" in text and "Verdict: PASS" in text
    card = ModelCard.load(tmp_path / "README.md")
    metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert metrics["seamharden/base_accuracy_after_attack"] == pytest.approx(0.94)
    assert metrics["seamharden/hardened_successful_attacks_keeping_skill"] == 0


def test_report_json_without_the_new_fields_still_loads(tmp_path, suite, suite_verdict):
    """A report.json written before harmful_success, criteria kinds and attack optimisation fields reads back."""
    write_report(suite, suite_verdict, tmp_path, title="t", base_model="org/base", recipe_name="r")
    raw = json.loads((tmp_path / "report.json").read_text())
    new_config = ("scheduler", "warmup_ratio", "weight_decay", "max_grad_norm", "eval_every")
    for run in raw["results"]["runs"]:
        for key in new_config:
            del run["config"][key]
        for point in run["points"]:
            del point["harmful_success"]
    for key in ("kind", "task", "max_accuracy_drop"):
        del raw["verdict"]["criteria"][key]
    del raw["verdict"]["unmet"]
    for key in ("accuracy_drop", "base_untaught_attacks", "base_forgetting_attacks", "base_worst_accuracy_after",
                "collapse_limit", "hardened_successful_attacks", "hardened_kept_skill_attacks"):
        del raw["verdict"]["figures"][key]
    (tmp_path / "report.json").write_text(json.dumps(raw))
    doc = load_report(tmp_path)
    assert suite_verdict.figures.accuracy_drop is not None  # loss verdicts record it since issue 17
    old_figures = suite_verdict.figures.model_copy(update={"accuracy_drop": None})
    assert doc.results == suite and doc.verdict == suite_verdict.model_copy(update={"figures": old_figures})


def test_hardening_summary_goes_into_report_md_and_json(tmp_path, suite, suite_verdict):
    hardening = {"steps": 600, "anchor": 1.0, "kept_step": 590, "utility_metric": "exact_match",
                 "utility_tolerance": 0.035, "utility_start": 0.989}
    result = suite.model_copy(update={"extra": {**suite.extra, "hardening": hardening}})
    write_report(result, suite_verdict, tmp_path, title="t", base_model="b", recipe_name="toy")
    md = (tmp_path / "report.md").read_text()
    assert "## Hardening" in md and "kept the weights of step 590" in md and "0.989" in md
    assert load_report(tmp_path / "report.json").results.extra["hardening"] == hardening


def test_hardening_section_warns_when_the_kept_copy_predates_l_sd():
    from seamharden.report.markdown import hardening_section

    base = {"steps": 120, "anchor": 1.0, "utility_metric": "loss", "utility_tolerance": 0.05, "utility_start": 4.0,
            "beta_delay": 80}
    assert "predate L_sd" in hardening_section(base | {"kept_step": 70})
    assert "predate L_sd" in hardening_section(base | {"kept_step": 80})
    assert "predate" not in hardening_section(base | {"kept_step": 90})
    assert "predate" not in hardening_section({k: v for k, v in base.items() if k != "beta_delay"} | {"kept_step": 0})


def test_hardening_section_names_the_beta_delay_and_the_restart():
    from seamharden.report.markdown import hardening_section

    base = {"steps": 120, "anchor": 1.0, "beta_delay": 80}
    assert "- L_sd off for the first 80 steps (seam.beta_delay)\n" in hardening_section(base)
    assert "anchor reference from the weights of step 80 (seam.delay_restart)" in hardening_section(
        base | {"delay_restart": 80})
    assert "seam.beta_delay" not in hardening_section({"steps": 120, "anchor": 1.0})


def test_hardening_section_names_where_grad_l_ul_was_taken(tmp_path):
    from seamharden.protect import estimator_summary
    from seamharden.recipe.loading import load_recipe
    from seamharden.report.markdown import hardening_section

    folded = estimator_summary(load_recipe("smollm2-135m-cpu"), tmp_path / "metrics.jsonl")
    own = estimator_summary(load_recipe("smollm2-135m-cpu", ["seam.unlearn_pass=own"]), tmp_path / "metrics.jsonl")
    assert folded["unlearn_pass"] == "perturbed" and "unlearn_pass" not in own
    line = "- L_sd estimator: forward; no self-check; grad L_ul taken in the perturbed adversarial pass"
    assert line in hardening_section({"steps": 130, "anchor": 1.0, "estimator": folded})
    assert "- L_sd estimator: forward; no self-check\n" in hardening_section({"steps": 130, "anchor": 1.0,
                                                                            "estimator": own})
