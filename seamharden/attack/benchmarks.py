"""Utility benchmarks through lm-evaluation-harness (the optional extra ``eval``), before and after attacks.

``attack.benchmarks`` names lm-eval tasks (the paper's ``arc_easy`` and ``mmlu``, or
``seamharden_mc``: the built-in multiple-choice items as a local task, a tiny set that runs on a
CPU in seconds and needs no download). The suite scores every task once on each pristine model
(``attack=None``, step 0) and once after each attack on the attacked weights, through the
harness's library API on the in-memory model: ``lm_eval.simple_evaluate`` with an ``HFLM``
wrapping it. Local task YAMLs come from ``attack.benchmark_include``; only when a task is not
found there is the harness's own task index built (about a minute on 2 CPU cores), and then
its datasets come from the Hub (cached; ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` hold).

lm-eval and torch are imported only when a benchmark runs, so the results schema
(``BenchmarkScore``) reads without the extra installed.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seamharden.errors import UserError

if TYPE_CHECKING:
    from seamharden.attack.evalset import EvalSettings

BUILTIN_TASK = "seamharden_mc"
EXTRA_HINT = "pip install 'seamharden[eval]'"

MC_TASK_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def mc_task_yaml(task: str, data: Path) -> str:
    """An lm-eval task YAML: multiple choice over a local JSON-lines file of {question, choices, answer} records
    (metric acc; offline, no Hub dataset)."""
    return MC_TASK_YAML.format(task=task, data=data)


Row = tuple[str, str, float, float | None]
"""(task, metric, value, stderr) of one benchmark metric."""


class BenchmarkScore(BaseModel):
    """One metric of one lm-eval task on one model, before (``attack`` None, step 0) or after an attack."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    model: Literal["base", "hardened"]
    attack: str | None = Field(None, description="the attack's label (attack_label); None: before any attack")
    step: int = Field(..., ge=0, description="attack step of the weights scored (0: pristine)")
    task: str
    metric: str = Field(..., description="lm-eval metric name, with its filter when not 'none' (acc, exact_match/flex)")
    value: float
    stderr: float | None = None


def require_harness() -> None:
    """Raise ``UserError`` when lm-evaluation-harness is not installed."""
    try:
        import lm_eval  # noqa: F401
    except ImportError as exc:
        raise UserError(f"attack.benchmarks needs lm-evaluation-harness: {EXTRA_HINT}") from exc


def builtin_task_dir(root: str | Path | None = None) -> Path:
    """A directory holding the ``seamharden_mc`` task YAML over the packaged ``mc.jsonl`` (absolute path)."""
    data = resources.files("seamharden") / "data" / "builtin" / "mc.jsonl"
    out = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="seamharden-tasks-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{BUILTIN_TASK}.yaml").write_text(mc_task_yaml(BUILTIN_TASK, Path(str(data))),
                                              encoding="utf-8")
    return out


def task_manager(tasks: Sequence[str], include: str | None = None):
    """An lm-eval ``TaskManager`` that knows every name in ``tasks``; ``UserError`` naming any unknown one.

    Local tasks (``include`` and the built-in one) are indexed first; the harness's own index
    (slow) only when a name is not among them.
    """
    require_harness()
    from lm_eval.tasks import TaskManager

    paths = [str(builtin_task_dir())]
    if include is not None:
        if not Path(include).is_dir():
            raise UserError(f"attack.benchmark_include: {include} is not a directory")
        paths.append(str(include))
    manager = TaskManager(include_path=paths, include_defaults=False)
    if not set(tasks) <= set(manager.all_tasks):
        manager = TaskManager(include_path=paths)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise UserError(f"attack.benchmarks: unknown lm-eval task(s) {', '.join(unknown)}")
    return manager


def _parse(results: dict[str, dict[str, Any]], tasks: Sequence[str]) -> list[Row]:
    """(task, metric, value, stderr) of each requested task's numeric metrics in lm-eval's ``results``."""
    out = []
    for task in tasks:
        row = results.get(task, {})
        for key, value in row.items():
            if "," not in key or "_stderr," in key or not isinstance(value, int | float):
                continue
            metric, filt = key.split(",", 1)
            stderr = row.get(f"{metric}_stderr,{filt}")
            stderr = float(stderr) if isinstance(stderr, int | float) and math.isfinite(stderr) else None
            out.append((task, metric if filt == "none" else f"{metric}/{filt}", float(value), stderr))
    return out


def run_benchmarks(model, tokenizer, tasks: Sequence[str], manager, *, limit: int | None = None,
                   batch_size: int = 8) -> list[Row]:
    """Score the in-memory ``model`` on ``tasks`` with lm-eval: (task, metric, value, stderr) rows.

    The model's train/eval mode is restored; global torch and numpy RNGs are left alone (lm-eval
    reseeds Python's ``random`` with 0 and its few-shot sampler with 1234).
    """
    require_harness()
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    was_training = model.training
    model.eval()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                                      log_samples=False, bootstrap_iters=1000, numpy_random_seed=None,
                                      torch_random_seed=None, verbosity="ERROR")
    finally:
        model.train(was_training)
    return _parse(out["results"], tasks)


@dataclass
class BenchmarkSuite:
    """The benchmarks of one suite: task names checked and indexed once, before any model loads."""

    tasks: tuple[str, ...]
    manager: Any
    limit: int | None = None
    batch_size: int = 8

    @classmethod
    def from_settings(cls, settings: EvalSettings) -> BenchmarkSuite | None:
        """None without ``settings.benchmarks``; ``UserError`` without the extra or for an unknown task."""
        if not settings.benchmarks:
            return None
        return cls(settings.benchmarks, task_manager(settings.benchmarks, settings.benchmark_include),
                   settings.benchmark_limit, settings.batch_size)

    def run(self, model, tokenizer) -> list[Row]:
        return run_benchmarks(model, tokenizer, self.tasks, self.manager, limit=self.limit,
                              batch_size=self.batch_size)

    @staticmethod
    def scores(rows: Sequence[Row], model: Literal["base", "hardened"], attack: str | None,
               step: int) -> list[BenchmarkScore]:
        """``rows`` as ``BenchmarkScore`` records of one model at one point."""
        return [BenchmarkScore(model=model, attack=attack, step=step, task=t, metric=m, value=v, stderr=s)
                for t, m, v, s in rows]

    def score(self, model, tokenizer, kind: Literal["base", "hardened"], attack: str | None,
              step: int) -> list[BenchmarkScore]:
        """``run`` then ``scores``."""
        return self.scores(self.run(model, tokenizer), kind, attack, step)
