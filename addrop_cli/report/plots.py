"""Figures of a report, written as PNG and SVG.

Figures are built on :class:`matplotlib.figure.Figure` directly (Agg canvas), never through
``pyplot``: no global backend or figure state, so reports are safe to make from threads, tests
and headless machines alike.

* ``curves_<task>``: dev main metric and training loss per evaluation for each variant, mean
  over seeds with a ±1 std band (from ``epochs.jsonl``).
* ``bars``: the task score of each variant per task, with 95% t-intervals over seeds.
* ``heatmap_<task>_<variant>``: mean dev score over a p x q sweep of one AD-DROP variant,
  annotated with the std over seeds.
* ``prior_<task>``: the paper's prior experiment (Figure 2): training loss of drop-low vs
  drop-high vs random vs no-drop, when the report holds those four variants.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from addrop_cli.data.metrics import summarize
from addrop_cli.report.aggregate import Table, TaskRow, variant_keys
from addrop_cli.report.build import Report
from addrop_cli.store.reader import SELECT_STAGE, RunRecord

FORMATS = ("png", "svg")


def write_plots(report: Report, out: Path) -> list[Path]:
    """Write every figure that applies to ``report`` into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    table = report.table
    for task in table.tasks:
        series = _series_by_variant(table, task)
        if any(series.values()):
            files += _save(_curves_figure(task, series), out / f"curves_{_slug(task.name)}")
        prior = _prior_variants(table, task.name)
        if prior:
            loss = {label: series.get(v, []) for label, v in prior.items()}
            files += _save(_prior_figure(task, loss), out / f"prior_{_slug(task.name)}")
    if any(c.n for c in table.cells.values()):
        files += _save(_bars_figure(table), out / "bars")
    for (task, variant), grid in _sweep_grids(report).items():
        row = next(t for t in table.tasks if t.name == task)
        name = f"heatmap_{_slug(task)}_{_slug(variant)}"
        files += _save(_heatmap_figure(row, variant, grid, table.epoch), out / name)
    return files


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

Series = list[tuple[list[float], list[float], list[float]]]
"""Per run: (x, dev main metric, train loss)."""


def _series_by_variant(table: Table, task: TaskRow) -> dict[str, Series]:
    out: dict[str, Series] = {}
    for v in table.variants:
        cell = table.cell(task.name, v)
        if cell is not None:
            out[v] = [s for s in (_run_series(r, task.main_metric) for r in cell.runs) if s[0]]
    return out


def _run_series(run: RunRecord, metric: str) -> tuple[list[float], list[float], list[float]]:
    rows = run.epochs()
    epochs = [row.get("epoch") for row in rows]
    by_epoch = len(set(epochs)) == len(epochs) and None not in epochs
    x, dev, loss = [], [], []
    for i, row in enumerate(rows):
        x.append(float(row["epoch"]) + 1 if by_epoch else float(i + 1))
        dev.append(_number((row.get("dev") or {}).get(metric)))
        loss.append(_number(row.get("train_loss")))
    return x, dev, loss


def _number(value: object) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else math.nan


def _band(runs: Series, which: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, mean and std over runs at each x (runs stopped early simply end sooner)."""
    values: dict[float, list[float]] = defaultdict(list)
    for run in runs:
        for x, y in zip(run[0], run[which], strict=True):
            if math.isfinite(y):
                values[x].append(y)
    xs = np.array(sorted(values))
    mean = np.array([np.mean(values[x]) for x in xs])
    std = np.array([np.std(values[x], ddof=1) if len(values[x]) > 1 else 0.0 for x in xs])
    return xs, mean, std


def _prior_variants(table: Table, task: str) -> dict[str, str]:
    """Label -> variant of the prior experiment (drop low/high, random, no drop), or {}."""
    found: dict[str, str] = {}
    for v in table.variants:
        if table.cell(task, v) is None:
            continue
        info = table.variant_info[v]
        params = info.method_params
        if info.method == "baseline":
            label = "no drop"
        elif info.method != "addrop":
            continue
        elif params.get("attribution") == "random":
            label = "random"
        else:
            label = f"drop {params.get('drop', 'high')}"
        found.setdefault(label, v)
    wanted = ("drop low", "drop high", "random", "no drop")
    return {label: found[label] for label in wanted} if all(w in found for w in wanted) else {}


def _sweep_grids(report: Report) -> dict[tuple[str, str], dict[tuple[float, float], list[float]]]:
    """(task, variant) -> (p, q) -> per-seed scores, for AD-DROP variants swept over p and q."""
    rows = {t.name: t for t in report.table.tasks}
    keys = variant_keys(report.records)
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in report.records:
        if r.status == "done" and r.method == "addrop":
            groups[r.task, keys[r.experiment, r.variant]].append(r)
    out = {}
    for key, runs in groups.items():
        selecting = [r for r in runs if r.sweep_stage == SELECT_STAGE]
        grid: dict[tuple[float, float], list[float]] = defaultdict(list)
        for r in selecting or runs:
            p, q = r.method_params.get("p"), r.method_params.get("q")
            if p is not None and q is not None:
                metrics = r.dev_metrics(report.table.epoch) or {}
                grid[float(p), float(q)].append(rows[r.task].score(metrics))
        ps, qs = {p for p, _ in grid}, {q for _, q in grid}
        if len(grid) > 1 and (len(ps) > 1 and len(qs) > 1):
            out[key] = dict(grid)
    return out


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def _curves_figure(task: TaskRow, series: Mapping[str, Series]) -> Figure:
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_dev, ax_loss = fig.subplots(1, 2)
    for variant, runs in series.items():
        for ax, which in ((ax_dev, 1), (ax_loss, 2)):
            xs, mean, std = _band(runs, which)
            if len(xs):
                (line,) = ax.plot(xs, mean, marker="o", ms=3, label=f"{variant} (n={len(runs)})")
                ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax_dev.set(title=f"{task.display}: dev {task.main_metric}", xlabel="epoch", ylabel="dev")
    ax_loss.set(title=f"{task.display}: training loss", xlabel="epoch", ylabel="loss")
    for ax in (ax_dev, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_dev.legend(fontsize="small")
    fig.suptitle("mean over seeds, band ±1 std")
    return fig


def _prior_figure(task: TaskRow, loss: Mapping[str, Series]) -> Figure:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for label, runs in loss.items():
        xs, mean, std = _band(runs, 2)
        if len(xs):
            (line,) = ax.plot(xs, mean, marker="o", ms=3, label=label)
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set(
        title=f"{task.display}: training loss, drop low vs high vs random vs none",
        xlabel="epoch",
        ylabel="training loss",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    return fig


def _bars_figure(table: Table) -> Figure:
    tasks = [t for t in table.tasks if any(table.cell(t.name, v) for v in table.variants)]
    fig = Figure(figsize=(max(5, 1.6 * len(tasks) * max(1, len(table.variants)) / 2), 4))
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    width = 0.8 / len(table.variants)
    for i, v in enumerate(table.variants):
        means, errors = [], []
        for t in tasks:
            cell = table.cell(t.name, v)
            scores = list(cell.seed_scores.values()) if cell else []
            means.append(100 * np.mean(scores) if scores else np.nan)
            errors.append(100 * _t_halfwidth(scores))
        xs = np.arange(len(tasks)) + (i - (len(table.variants) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=errors, capsize=3, label=v)
    ax.set_xticks(np.arange(len(tasks)), [t.display for t in tasks])
    ax.set(ylabel="dev task score x100", title="Task score per variant (95% t-interval, seeds)")
    ax.legend(fontsize="small")
    return fig


def _heatmap_figure(
    task: TaskRow, variant: str, grid: Mapping[tuple[float, float], Sequence[float]], epoch: str
) -> Figure:
    ps = sorted({p for p, _ in grid})
    qs = sorted({q for _, q in grid})
    mean = np.full((len(ps), len(qs)), np.nan)
    fig = Figure(figsize=(1.1 * len(qs) + 2.5, 0.8 * len(ps) + 1.8), layout="constrained")
    ax = fig.subplots()
    for (p, q), scores in grid.items():
        s = summarize(list(scores))
        i, j = ps.index(p), qs.index(q)
        mean[i, j] = 100 * s.center
        std = f"\n±{100 * s.std:.2f}" if s.std is not None else ""
        ax.text(j, i, f"{100 * s.center:.2f}{std}", ha="center", va="center", fontsize=8)
    image = ax.imshow(mean, cmap="viridis", origin="lower", aspect="auto", alpha=0.85)
    fig.colorbar(image, ax=ax, label=f"mean dev score x100 ({epoch} epoch)")
    ax.set_xticks(range(len(qs)), [f"{q:g}" for q in qs])
    ax.set_yticks(range(len(ps)), [f"{p:g}" for p in ps])
    ax.set(xlabel="q (drop probability)", ylabel="p (candidate region)")
    ax.set_title(f"{task.display}, {variant}: mean ± std over seeds")
    return fig


def _t_halfwidth(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    sem = np.std(values, ddof=1) / math.sqrt(len(values))
    return float(stats.t.ppf(0.975, len(values) - 1) * sem)


def _save(fig: Figure, stem: Path) -> list[Path]:
    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=150 if path.suffix == ".png" else "figure")
    return paths


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def png_files(paths: Iterable[Path]) -> list[Path]:
    """The PNG files among ``paths`` (what Markdown and HTML reports embed)."""
    return [p for p in paths if p.suffix == ".png"]
