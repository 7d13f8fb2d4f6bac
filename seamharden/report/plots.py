"""PNG figures of an attack suite, drawn with matplotlib's Agg canvas (no pyplot state)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seamharden.attack.results import AttackRun, ModelKind, SuiteResult
from seamharden.attack.verdict import Verdict
from seamharden.report.tables import benign_accuracy_name

MODELS: tuple[ModelKind, ...] = ("base", "hardened")
MODEL_COLORS = {"base": "tab:blue", "hardened": "tab:red"}
STREAM_COLORS = {"adv": "tab:red", "bgn": "tab:green"}
LINESTYLES = ("-", "--", ":", "-.")
DPI = 80


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def _variant(run: AttackRun) -> tuple:
    c = run.config
    return (c.method, c.optimizer, c.samples, c.steps, c.batch_size, c.benign_mix)


def _styles(runs: list[AttackRun]) -> dict[str, tuple]:
    """Colour per learning rate, line style per other attack variant, keyed by run label."""
    lrs = sorted({r.config.lr for r in runs})
    variants = list(dict.fromkeys(_variant(r) for r in runs))
    palette = colormaps["viridis"]
    out = {}
    for r in runs:
        color = palette(0.9 * lrs.index(r.config.lr) / max(1, len(lrs) - 1))
        out[r.label] = (color, LINESTYLES[variants.index(_variant(r)) % len(LINESTYLES)])
    return out


def _values(run: AttackRun, metric: str) -> list[float]:
    """``metric`` at each point of ``run``; NaN where it was not measured (a gap in the line)."""
    return [math.nan if getattr(p, metric) is None else getattr(p, metric) for p in run.points]


def _metric_plot(result: SuiteResult, metric: str, ylabel: str, path: Path, floor: float | None,
                 floor_label: str = "collapse floor", log_ok: bool = True) -> Path:
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    fig.subplots_adjust(left=0.06, right=0.74, bottom=0.12, top=0.92, wspace=0.05)
    styles = _styles(result.runs)
    values = [v for r in result.runs for v in _values(r, metric)]
    finite = [v for v in values if math.isfinite(v) and v > 0]
    for ax, model in zip(axes, MODELS, strict=True):
        for run in result.runs_of(model):
            color, ls = styles[run.label]
            ax.plot([p.step for p in run.points], _values(run, metric),
                    color=color, linestyle=ls, marker=".", label=run.label)
        if floor is not None:
            ax.axhline(floor, color="black", linestyle=(0, (4, 4)), linewidth=0.8, label=floor_label)
        ax.set_title(f"{model} model")
        ax.set_xlabel("attack step")
        ax.grid(alpha=0.3)
    if log_ok and finite and max(finite) / min(finite) > 20:
        axes[0].set_yscale("log")
    axes[0].set_ylabel(ylabel)
    legend = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        labels, handles = list(legend), list(legend.values())
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.75, 0.92),
                   fontsize=7 if len(labels) < 12 else 5, frameon=False)
    return _save(fig, path)


def _scatter_plot(result: SuiteResult, path: Path, floor: float | None) -> Path:
    pairs = result.pairs()
    ncols = min(4, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    height = 2.9 * nrows + 0.6
    fig = Figure(figsize=(3.2 * ncols, height))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.5 / height, top=1 - 0.6 / height, wspace=0.3, hspace=0.55)
    for ax, (_config, base, hard) in zip(axes, pairs, strict=False):  # the grid may have spare cells
        for run in (base, hard):
            if run is None:
                continue
            xs = [p.harmful_loss for p in run.points]
            ys = [p.benign_loss for p in run.points]
            c = MODEL_COLORS[run.model]
            ax.plot(xs, ys, color=c, alpha=0.5, linewidth=0.8)
            ax.scatter(xs, ys, color=c, s=10, label=run.model)
            ax.scatter(xs[:1], ys[:1], color=c, s=50, marker="*", edgecolor="black", linewidth=0.5)
        if floor is not None:
            ax.axhline(floor, color="black", linestyle=(0, (4, 4)), linewidth=0.8)
        ax.set_title((base or hard).label, fontsize=8)
        ax.set_xlabel("harmful loss (lower = more harmful)", fontsize=7)
        ax.set_ylabel("benign loss (higher = less useful)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.suptitle("utility vs harmfulness along each attack (★ = step 0, dashed = collapse floor)",
                 fontsize=9, y=1 - 0.12 / height, va="top")
    return _save(fig, path)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` onto their first two principal components (SVD).

    Returns (coordinates n x 2, explained-variance ratios of the two components).
    """
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(2, vt.shape[0])
    coords = np.zeros((x.shape[0], 2))
    coords[:, :k] = xc @ vt[:k].T
    var = s**2
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:k] = var[:k] / var.sum()
    return coords, ratio


def _cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else None


def _pca_plot(result: SuiteResult, path: Path) -> Path:
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.85, wspace=0.2)
    for ax, model in zip(axes, MODELS, strict=True):
        streams = {s.stream: np.asarray(s.vectors, dtype=np.float64)
                   for s in result.gradients if s.model == model and s.vectors}
        ax.set_title(f"{model} model")
        if not streams or len({v.shape[1] for v in streams.values()}) != 1:
            ax.text(0.5, 0.5, "no gradient samples", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        names = list(streams)
        coords, ratio = pca_2d(np.vstack([streams[n] for n in names]))
        start = 0
        for name in names:
            n = len(streams[name])
            ax.scatter(coords[start:start + n, 0], coords[start:start + n, 1], s=14, alpha=0.7,
                       color=STREAM_COLORS[name], label=f"D_{name} ({n} batches)")
            start += n
        if {"adv", "bgn"} <= streams.keys():
            cos = _cosine(streams["adv"].mean(axis=0), streams["bgn"].mean(axis=0))
            if cos is not None:
                ax.set_title(f"{model} model: cos(mean g_adv, mean g_bgn) = {cos:+.2f}")
        ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({ratio[1]:.0%} of variance)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("per-batch gradients of harmful (D_adv) and benign (D_bgn) data, PCA", fontsize=10)
    return _save(fig, path)


def _measured(result: SuiteResult, metric: str) -> bool:
    return any(getattr(p, metric) is not None for r in result.runs for p in r.points)


def write_plots(result: SuiteResult, verdict: Verdict, plots_dir: Path) -> list[Path]:
    """Write every figure the data allows into ``plots_dir``; returns the files written."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    b0 = verdict.figures.base_benign_loss
    floor = verdict.criteria.utility_floor * b0 if b0 is not None and math.isfinite(b0) else None
    out: list[Path] = []
    if result.runs:
        out.append(_metric_plot(result, "harmful_loss", "harmful loss (CE on D_adv)",
                                plots_dir / "harmful_loss.png", None))
        out.append(_metric_plot(result, "benign_loss", "benign loss (CE on D_bgn)",
                                plots_dir / "benign_loss.png", floor))
        out.append(_scatter_plot(result, plots_dir / "utility_vs_harm.png", floor))
    if _measured(result, "harmful_success"):
        success = verdict.criteria.task.success if verdict.criteria.kind == "task" else None
        out.append(_metric_plot(result, "harmful_success", "harmful success (exact match on D_adv)",
                                plots_dir / "harmful_success.png", success, "success threshold", log_ok=False))
    if _measured(result, "benign_accuracy"):
        out.append(_metric_plot(result, "benign_accuracy", f"benign accuracy ({benign_accuracy_name(result)})",
                                plots_dir / "benign_accuracy.png", verdict.figures.collapse_limit, "collapse limit",
                                log_ok=False))
    if any(s.vectors for s in result.gradients):
        out.append(_pca_plot(result, plots_dir / "gradient_pca.png"))
    return out
