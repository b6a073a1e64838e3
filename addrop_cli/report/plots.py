"""Figures of a report, written as PNG and SVG.

Figures are built on :class:`matplotlib.figure.Figure` directly (Agg canvas), never through
``pyplot``: no global backend or figure state, so reports are safe to make from threads, tests
and headless machines alike.

* ``curves_<task>``: dev main metric, training loss and dev loss per evaluation for each
  variant, mean over seeds with a ±1 std band (from ``epochs.jsonl``; runs made before the dev
  loss was recorded have no dev-loss panel).
* ``bars``: the task score of each variant per task, with 95% t-intervals over seeds.
* ``heatmap_<task>_<variant>``: mean dev score over a p x q sweep of one AD-DROP variant,
  annotated with the std over seeds.
* ``factor_<task>_<factor>``: the main metric against a numeric factor (``factors:``), mean
  over seeds with a 95% t-interval band per variant; a log x axis where the values span a
  decade or more.
* ``prior_<task>``: the paper's prior experiment (Figure 2): training and dev loss of drop-low
  vs drop-high vs random vs no-drop, when the report holds those four variants.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from addrop_cli.data.metrics import score_bounds
from addrop_cli.report.aggregate import Table, TaskRow
from addrop_cli.report.build import Report
from addrop_cli.report.curves import Curve, band_frame, factor_curves, t_halfwidth
from addrop_cli.report.frame import DEV, DEV_LOSS, curve_frame
from addrop_cli.store.reader import SELECT_STAGE

FORMATS = ("png", "svg")


def write_plots(report: Report, out: Path) -> list[Path]:
    """Write every figure that applies to ``report`` into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    table = report.table
    curves = _curves(table)
    for task in table.tasks:
        bands = _bands(curves[curves["task"] == task.name], DEV + task.main_metric)
        if len(bands):
            files += _save(_curves_figure(task, bands), out / f"curves_{_slug(task.name)}")
        prior = _prior_variants(table, task.name)
        if prior:
            loss = bands[bands["variant"].isin(prior.values())]
            labels = {v: label for label, v in prior.items()}
            loss = loss.assign(variant=loss["variant"].astype(str).map(labels))
            files += _save(
                _prior_figure(task, loss, list(prior)), out / f"prior_{_slug(task.name)}"
            )
    if any(c.n for c in table.cells.values()):
        files += _save(_bars_figure(table), out / "bars")
    for curve in factor_curves(table):
        name = f"factor_{_slug(curve.task)}_{_slug(curve.factor)}"
        name += f"_{_slug(curve.others)}" if curve.others else ""
        files += _save(_factor_figure(curve, band_frame(table, curve)), out / name)
    for (task, variant), grid in _sweep_grids(table).items():
        row = next(t for t in table.tasks if t.name == task)
        name = f"heatmap_{_slug(task)}_{_slug(variant)}"
        files += _save(_heatmap_figure(row, variant, grid, table.epoch), out / name)
    return files


# ---------------------------------------------------------------------------------------------
# Data: pandas on the run frame and the curve frame
# ---------------------------------------------------------------------------------------------


def _curves(table: Table) -> pd.DataFrame:
    """Every evaluation of the runs the table counts, with their task and variant."""
    counted = table.counted[["run_id", "path", "task", "variant"]]
    records = [c for cell in table.cells.values() for c in cell.runs]
    curves = curve_frame(records).merge(counted, on=["run_id", "path"])
    return curves.astype({"variant": pd.CategoricalDtype(table.variants)})  # the table's order


def _bands(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per variant and x: mean and std over runs of the dev metric, the training loss and the
    dev loss (runs stopped early simply end sooner), and how many runs the variant has."""
    if curves.empty or metric not in curves:
        return pd.DataFrame(columns=["variant", "x", "runs"])
    # The (first) dev split's loss; NaN for runs made before the dev loss was recorded.
    losses = sorted(c for c in curves.columns if c.startswith(DEV_LOSS))
    curves = curves.assign(dev_loss=curves[losses[0]] if losses else np.nan)
    columns = [metric, "train_loss", "dev_loss"]
    grouped = curves.groupby(["variant", "x"], observed=True)[columns]
    bands = grouped.agg(["mean", "std"]).fillna({(c, "std"): 0.0 for c in columns})
    bands.columns = ["dev", "dev_std", "loss", "loss_std", "dev_loss", "dev_loss_std"]
    runs = curves.groupby("variant", observed=True)["run_id"].nunique()
    bands = bands.reset_index()
    return bands.assign(runs=bands["variant"].map(runs).astype(int))


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


def _sweep_grids(table: Table) -> dict[tuple[str, str], pd.DataFrame]:
    """(task, variant) -> p x q tables of (mean, std) score over seeds, for AD-DROP variants
    swept over p and q (from the selection stage when there is one)."""
    frame = table.frame
    runs = frame[
        (frame["evaluation"] == table.epoch)
        & (frame["status"] == "done")
        & (frame["method"] == "addrop")
    ]
    if not {"param_p", "param_q"} <= set(runs.columns):
        return {}
    out = {}
    for key, group in runs.dropna(subset=["param_p", "param_q"]).groupby(["task", "variant"]):
        selecting = group[group["stage"] == SELECT_STAGE]
        group = selecting if len(selecting) else group
        grid = group.pivot_table(
            index="param_p",
            columns="param_q",
            values="score",
            aggfunc=["mean", "std"],
            dropna=False,  # keep the std columns with one seed per point (all NaN)
        )
        if min(grid["mean"].shape) > 1:  # two or more values of both p and q
            out[key] = grid
    return out


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def _panels(task: TaskRow, bands: pd.DataFrame, *, metric: bool) -> list[tuple[str, str]]:
    """(column, title) of each panel: the dev metric (curves only), the training loss, and the
    dev loss when any run recorded it."""
    panels = [("dev", f"dev {task.main_metric}")] if metric else []
    panels.append(("loss", "training loss"))
    if bands["dev_loss"].notna().any():
        panels.append(("dev_loss", "dev loss"))
    return panels


def _curves_figure(task: TaskRow, bands: pd.DataFrame) -> Figure:
    panels = _panels(task, bands, metric=True)
    fig = Figure(figsize=(5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for variant, band in bands.groupby("variant", observed=True):
        label = f"{variant} (n={band['runs'].iloc[0]})"
        for ax, (col, _) in zip(axes, panels, strict=True):
            _line_of(ax, band, col, label, alpha=0.2)
    _label_axes(task, axes, panels)
    axes[0].legend(fontsize="small")
    fig.suptitle(_band_note(bands, "mean over seeds"))
    return fig


def _prior_figure(task: TaskRow, loss: pd.DataFrame, labels: Sequence[str]) -> Figure:
    """The paper's Figure 2: training loss and dev loss per epoch, one line per variant."""
    panels = _panels(task, loss, metric=False)
    fig = Figure(figsize=(5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for label in labels:
        band = loss[loss["variant"] == label]
        for ax, (col, _) in zip(axes, panels, strict=True):
            _line_of(ax, band, col, label, alpha=0.15)
    _label_axes(task, axes, panels)
    axes[0].legend()
    note = _band_note(loss, "mean over seeds")
    fig.suptitle(f"prior experiment: drop low vs high vs random vs none ({note})")
    return fig


def _band_note(bands: pd.DataFrame, what: str) -> str:
    """What the bands show: ±1 std over seeds, or nothing where a variant has one seed."""
    runs = bands["runs"] if "runs" in bands and len(bands) else pd.Series([1])
    if runs.max() < 2:
        return "one seed per variant: no band"
    return f"{what}, band ±1 std" + ("" if runs.min() >= 2 else "; no band for one seed")


def _line_of(ax, band: pd.DataFrame, col: str, label: str, alpha: float) -> None:
    band = band.dropna(subset=[col])
    if len(band):
        _line(ax, band["x"], band[col], band[f"{col}_std"], label, alpha=alpha)


def _label_axes(task: TaskRow, axes: Sequence, panels: Sequence[tuple[str, str]]) -> None:
    for ax, (_, title) in zip(axes, panels, strict=True):
        ax.set(title=f"{task.display}: {title}", xlabel="epoch", ylabel=title.split()[-1])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _line(ax, x: pd.Series, mean: pd.Series, std: pd.Series, label: str, alpha: float) -> None:
    """A mean curve with markers and a ±1 std band in its colour."""
    x, mean, std = (np.asarray(v, dtype=float) for v in (x, mean, std))
    (line,) = ax.plot(x, mean, marker="o", ms=3, label=label)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=alpha)


def _bars_figure(table: Table) -> Figure:
    """Task score per variant, zoomed to the data (the axis break is drawn when the axis does
    not start at the metric's floor), 95% t-intervals over seeds clipped to the values the score
    can take, none for a single seed; the legend sits outside the bars."""
    tasks = [t for t in table.tasks if any(table.cell(t.name, v) for v in table.variants)]
    fig = Figure(figsize=(max(5, 1.6 * len(tasks) * max(1, len(table.variants)) / 2) + 2, 4))
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    width = 0.8 / len(table.variants)
    lows, highs, floors, most = [], [], [], 1
    for i, v in enumerate(table.variants):
        means, below, above = [], [], []
        for t in tasks:
            cell = table.cell(t.name, v)
            scores = list(cell.seed_scores.values()) if cell else []
            most = max(most, len(scores))
            lo, hi = (100 * b for b in score_bounds(t.metrics))
            floors.append(lo)
            mean = 100 * np.mean(scores) if scores else np.nan
            half = 100 * t_halfwidth(scores)
            means.append(mean)
            below.append(mean - max(lo, mean - half) if scores else 0.0)
            above.append(min(hi, mean + half) - mean if scores else 0.0)
            if scores:
                lows.append(mean - below[-1])
                highs.append(mean + above[-1])
        xs = np.arange(len(tasks)) + (i - (len(table.variants) - 1) / 2) * width
        errors = [below, above] if most > 1 else None
        ax.bar(xs, means, width, yerr=errors, capsize=3, label=v)
    ax.set_xticks(np.arange(len(tasks)), [t.display for t in tasks])
    interval = "95% t-interval over seeds" if most > 1 else "one seed: no interval"
    ax.set(ylabel="dev task score x100", title=f"Task score per variant ({interval})")
    if lows:
        _zoom(ax, min(lows), max(highs), floor=min(floors))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def _factor_figure(curve: Curve, bands: pd.DataFrame) -> Figure:
    """The main metric x100 against the factor: a mean line and a 95% band per variant."""
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    for variant, band in bands.groupby("variant", sort=False):
        (line,) = ax.plot(band["x"], 100 * band["mean"], marker="o", ms=4, label=str(variant))
        ax.fill_between(
            band["x"], 100 * band["low"], 100 * band["high"], color=line.get_color(), alpha=0.2
        )
    if curve.log_x:
        ax.set_xscale("log")
    xs = [x for x, _ in curve.rows]
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    most = int(bands["n"].max()) if len(bands) else 0
    interval = "95% t-interval over seeds" if most > 1 else "one seed: no interval"
    ax.set(xlabel=curve.factor, ylabel=f"dev {curve.metric} x100", title=curve.title)
    ax.legend(fontsize="small", title=f"mean, {interval}", title_fontsize="small")
    return fig


def _zoom(ax, low: float, high: float, *, floor: float) -> None:
    """Show the bars' range with a margin; where that cuts the axis above its natural floor,
    mark the break (two slashes on the y axis) so that short bars are not read as near zero."""
    margin = max(0.15 * (high - low), 0.5)
    bottom = max(floor, low - margin) if math.isfinite(floor) else low - margin
    ax.set_ylim(bottom, high + margin)
    if bottom > floor:
        marks = dict(transform=ax.transAxes, color="k", clip_on=False, lw=1)
        for dy in (0.0, 0.02):
            ax.plot((-0.015, 0.015), (0.01 + dy, 0.03 + dy), **marks)


def _heatmap_figure(task: TaskRow, variant: str, grid: pd.DataFrame, epoch: str) -> Figure:
    mean, std = 100 * grid["mean"], 100 * grid["std"]
    ps, qs = list(mean.index), list(mean.columns)
    fig = Figure(figsize=(1.1 * len(qs) + 2.5, 0.8 * len(ps) + 1.8), layout="constrained")
    ax = fig.subplots()
    for i, p in enumerate(ps):
        for j, q in enumerate(qs):
            if pd.notna(mean.loc[p, q]):
                spread = f"\n±{std.loc[p, q]:.2f}" if pd.notna(std.loc[p, q]) else ""
                text = f"{mean.loc[p, q]:.2f}{spread}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8)
    image = ax.imshow(mean.to_numpy(dtype=float), cmap="viridis", origin="lower", aspect="auto")
    image.set_alpha(0.85)
    fig.colorbar(image, ax=ax, label=f"mean dev score x100 ({epoch} epoch)")
    ax.set_xticks(range(len(qs)), [f"{q:g}" for q in qs])
    ax.set_yticks(range(len(ps)), [f"{p:g}" for p in ps])
    ax.set(xlabel="q (drop probability)", ylabel="p (candidate region)")
    spread = "mean ± std over seeds" if std.notna().any().any() else "one seed: no spread"
    ax.set_title(f"{task.display}, {variant}: {spread}")
    return fig


def _save(fig: Figure, stem: Path) -> list[Path]:
    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=150 if path.suffix == ".png" else "figure")
    return paths


def _slug(name: str) -> str:
    """A file-name part: ``sst2 (train_size=120)`` -> ``sst2_train_size_120`` (no stray ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "_"


def png_files(paths: Iterable[Path]) -> list[Path]:
    """The PNG files among ``paths`` (what Markdown and HTML reports embed)."""
    return [p for p in paths if p.suffix == ".png"]
