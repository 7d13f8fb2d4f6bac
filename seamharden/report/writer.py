"""``write_report``: every report file of one attack suite into one directory."""

from __future__ import annotations

from pathlib import Path

from seamharden.attack.results import SuiteResult
from seamharden.attack.verdict import Verdict
from seamharden.report.card import DEFAULT_DATASET_NAME, DEFAULT_DATASET_TYPE, write_model_card
from seamharden.report.json_io import ReportDocument, write_report_json
from seamharden.report.markdown import render_report_md
from seamharden.report.plots import write_plots

PLOTS_DIR = "plots"


def write_report(result: SuiteResult, verdict: Verdict, out_dir: str | Path, *, title: str, base_model: str,
                 recipe_name: str, license: str | None = None, dataset_name: str | None = None,
                 dataset_type: str | None = None) -> list[Path]:
    """Write report.json, report.md, plots/*.png and the model card README.md; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = ReportDocument(title=title, recipe_name=recipe_name, base_model=base_model, results=result, verdict=verdict)
    plots = write_plots(result, verdict, out_dir / PLOTS_DIR)
    rel = [p.relative_to(out_dir).as_posix() for p in plots]
    md = out_dir / "report.md"
    md.write_text(render_report_md(result, verdict, title=title, base_model=base_model,
                                   recipe_name=recipe_name, plots=rel,
                                   dataset_type=dataset_type or DEFAULT_DATASET_TYPE,
                                   dataset_name=dataset_name or DEFAULT_DATASET_NAME), encoding="utf-8")
    card = write_model_card(result, verdict, out_dir, base_model=base_model, recipe_name=recipe_name,
                            license=license, dataset_name=dataset_name, dataset_type=dataset_type, plots=rel)
    return [write_report_json(doc, out_dir), md, card, *plots]
