"""Render a :class:`~addrop_cli.report.build.Report`: terminal (Rich), Markdown, CSV, LaTeX, HTML
and JSON.

Every table is first laid out once as a :class:`Grid`: a DataFrame of display strings (a cell's
lines joined by newlines) and a same-shaped DataFrame of best-cell flags. Each format is then
pandas' own writer on that frame (``to_markdown``, ``Styler.to_latex``, ``Styler.to_html``), so
formats cannot disagree on a number. Scores are shown x100 with two decimals; CSV and JSON keep
the raw fractions (:mod:`addrop_cli.report.export`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from addrop_cli.report.aggregate import Cell, GlueCell, TaskRow
from addrop_cli.report.build import Report
from addrop_cli.report.cost import cost_text
from addrop_cli.report.curves import difference_frame, factor_curves
from addrop_cli.report.evidence import behaviour_text, stats_text
from addrop_cli.report.missing import with_not_run
from addrop_cli.store.atomic import atomic_write_text

METRIC_NAMES = {
    "mcc": "MCC",
    "accuracy": "acc",
    "f1": "F1",
    "pearson": "Pearson",
    "spearman": "Spearman",
    "mse": "MSE",
    "accuracy_m": "acc-m",
    "accuracy_mm": "acc-mm",
}


@dataclass(frozen=True)
class Grid:
    """A laid-out table: display text, best-cell flags, and notes printed under it."""

    title: str
    text: pd.DataFrame
    """Display strings; a cell's lines are joined by newlines."""
    best: pd.DataFrame
    """Same shape as ``text``: True where the cell is the best of its row."""
    notes: tuple[str, ...] = ()

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(self.text.columns)


def _grid(title: str, cells: Sequence[Mapping[str, tuple[str, bool]]], notes=()) -> Grid:
    """A grid from rows of column -> (text, best)."""
    frame = pd.DataFrame(cells)
    text = frame.map(lambda c: c[0]) if len(frame) else frame
    best = frame.map(lambda c: c[1]) if len(frame) else frame
    return Grid(title, text, best, tuple(notes))


def _plain(frame: pd.DataFrame, title: str, notes: Sequence[str] = ()) -> Grid:
    """A grid with no best cells."""
    text = frame.astype(str)
    return Grid(
        title, text, pd.DataFrame(False, index=text.index, columns=text.columns), tuple(notes)
    )


# ---------------------------------------------------------------------------------------------
# Layout: report -> grids
# ---------------------------------------------------------------------------------------------


def main_grid(report: Report) -> Grid:
    """Tasks x variants, plus the GLUE row, with protocol, formula and legend as notes."""
    table = report.table
    headers = {v: _variant_header(report, v) for v in table.variants}
    rows = []
    for task in table.tasks:
        row = {"Task": (task.display, False), "Metric": (metric_label(task), False)}
        for v in table.variants:
            comparison = report.comparison(task.name, v)
            mark = comparison.marker if comparison else ""
            row[headers[v]] = _cell(task, table.cell(task.name, v), mark, report.bold(task.name, v))
        rows.append(row)
    notes = list(report.protocol)
    if table.glue is not None:
        glue = {headers[v]: _glue_cell(table.glue[v]) for v in table.variants}
        rows.append({"Task": ("GLUE", False), "Metric": ("score", False)} | glue)
        notes.append(report.glue_formula + ".")
        covered = max((len(g.covered) for g in table.glue.values()), default=0)
        if covered < 9:
            notes.append(
                f"GLUE score here covers only the GLUE tasks in this table ({covered} of 9), "
                "so it is not comparable with full-benchmark scores."
            )
    notes.append(
        f"Bold: a row's best cell, only where its difference from {table.reference} is "
        f"significant after the correction. {report.legend}."
    )
    return _grid("Dev results", rows, notes)


def stats_grid(report: Report) -> Grid | None:
    """One row per (task, variant) compared with the reference; None when there is nothing to
    compare (one variant, or no task with both)."""
    if not report.comparisons:
        return None
    text, notes = stats_text(report.comparisons, report.family, report.table)
    return _plain(text, "Statistics", notes)


def behaviour_grid(report: Report) -> Grid | None:
    """What the runs did: selected epochs, an inactive method, predictions like the reference's."""
    found = behaviour_text(report.behaviour, report.table)
    return None if found is None else _plain(found[0], "What the runs did", found[1])


def cost_grid(report: Report) -> Grid:
    text, notes = cost_text(report.cost, report.table)
    return _plain(text, "Cost", notes)


def not_counted_grid(report: Report) -> Grid | None:
    frame = report.table.frame
    runs = frame[(frame["evaluation"] == report.table.epoch) & (frame["status"] != "done")]
    if runs.empty:
        return None
    runs = runs.sort_values(["task", "name", "seed"], kind="stable")
    columns = {"task": "Task", "name": "Variant", "seed": "Seed", "status": "Status"}
    text = runs[[*columns, "reason", "path"]].rename(columns=columns | {"reason": "Reason"})
    return _plain(text.rename(columns={"path": "Run"}).reset_index(drop=True), "Runs not counted")


def metric_label(task: TaskRow) -> str:
    return "/".join(METRIC_NAMES.get(m, m) for m in task.metrics)


def _cell(task: TaskRow, cell: Cell | None, mark: str, bold: bool) -> tuple[str, bool]:
    if cell is None:
        return ("—", False)
    values = []
    for m in task.metrics:
        s = cell.metrics.get(m)
        if s is None or s.center is None:
            values.append("—")
        else:
            values.append(_pct(s.center) + ("" if s.std is None else f" ± {_pct(s.std)}"))
    lines = [" / ".join(values)]
    extra = []
    if cell.delta:
        deltas = "/".join(_pct(cell.delta[m], signed=True) for m in task.metrics if m in cell.delta)
        extra.append(f"Δ {deltas}{mark}")
    extra.append(f"n={cell.n}" if cell.n == cell.expected else f"n={cell.n}/{cell.expected}")
    lines.append(" ".join(extra))
    if cell.point:
        lines.append(", ".join(f"{_short(k)}={v}" for k, v in cell.point.items()))
    return ("\n".join(lines), bold)


def _glue_cell(g: GlueCell) -> tuple[str, bool]:
    if g.score is None:
        return ("—", False)
    lines = [_pct(g.score)]
    extra = []
    if g.delta is not None:
        extra.append(f"Δ {_pct(g.delta, signed=True)}")
    if g.missing:
        extra.append(f"{len(g.covered)}/{len(g.covered) + len(g.missing)} tasks")
    if extra:
        lines.append(" ".join(extra))
    return ("\n".join(lines), False)  # no test stands behind a GLUE score: never bold


def _variant_header(report: Report, variant: str) -> str:
    return f"{variant} (ref)" if variant == report.table.reference else variant


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _pct(value: float | None, *, signed: bool = False) -> str:
    if value is None or pd.isna(value) or not math.isfinite(value):
        return "—"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _signed(value: float | None) -> str:
    return _pct(value, signed=True)


def _p(value: float | None) -> str:
    if value is None or pd.isna(value):
        return "—"
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def _num(value: float | None, digits: int, suffix: str = "") -> str:
    return "—" if value is None or pd.isna(value) else f"{value:,.{digits}f}{suffix}"


def curve_grids(report: Report) -> list[Grid]:
    """Per numeric factor curve: each variant's paired difference from the reference at every
    factor value (:mod:`addrop_cli.report.curves`)."""
    out = []
    for curve in factor_curves(report.table):
        f = difference_frame(report, curve)
        if f.empty:
            continue
        boot = [
            f"[{_signed(lo)}, {_signed(hi)}]" if pd.notna(lo) else "—"
            for lo, hi in zip(f["boot_low"], f["boot_high"], strict=True)
        ]
        text = pd.DataFrame(
            {
                "Variant": f["variant"],
                curve.factor: f["x"].map(lambda x: f"{x:g}"),
                "seeds": f["seeds"].astype(str),
                f"paired Δ {curve.metric}": f["diff"].map(_signed),
                "bootstrap 95% CI": boot,
                "paired t p": f["t_p"].map(_p),
                f"Holm p ({report.family.size})": f["p_holm"].map(_p),
            }
        )
        notes = (
            f"Against {report.table.reference} at each {curve.factor}: mean over seeds of the "
            "per-seed difference (paired by seed), x100; 95% CI: the two-level bootstrap (seeds "
            "and dev examples); Holm p: over the report's whole family of comparisons (every "
            "variant at every value), as in the statistics table.",
        )
        text = with_not_run(text, curve.factor, report.missing)  # planned values not run
        out.append(_plain(text, f"Curve: {curve.title}", notes))
    return out


def grids(report: Report) -> list[Grid]:
    """Every table of the report, in reading order."""
    maybe = [main_grid(report), *curve_grids(report), stats_grid(report)]
    maybe += [behaviour_grid(report), cost_grid(report)]
    maybe.append(not_counted_grid(report))
    return [grid for grid in maybe if grid is not None]


# ---------------------------------------------------------------------------------------------
# Formats: grid -> text, each pandas' own writer
# ---------------------------------------------------------------------------------------------


def to_rich(grid: Grid) -> RichTable:
    table = RichTable(title=grid.title, caption="\n".join(grid.notes) or None, show_lines=True)
    table.caption_justify = "left"
    for i, name in enumerate(grid.header):
        table.add_column(name, justify="left" if i < 2 else "right")
    for text, best in zip(
        grid.text.itertuples(index=False), grid.best.itertuples(index=False), strict=True
    ):
        table.add_row(
            *(Text(t, style="bold green" if b else "") for t, b in zip(text, best, strict=True))
        )
    return table


def print_terminal(report: Report, console: Console) -> None:
    if report.missing.line:
        console.print(Text(report.missing.line, style="yellow"), highlight=False)
    for grid in grids(report):
        console.print(to_rich(grid))
    for message in report.warnings:
        console.print(Text.assemble(("warning:", "yellow"), f" {message}"), highlight=False)


def _cells(grid: Grid, line, join: str, bold) -> pd.DataFrame:
    """The grid's text with each line escaped by ``line``, joined, and bold cells wrapped."""
    text = grid.text.map(lambda t: join.join(line(x) for x in str(t).split("\n")))
    return text.mask(grid.best.astype(bool), text.map(bold))


def _align(grid: Grid) -> tuple[str, ...]:
    return tuple("left" if i < 2 else "right" for i in range(len(grid.header)))


def to_markdown(grid: Grid, level: int = 2) -> str:
    cells = _cells(grid, _md_escape, "<br>", lambda t: f"**{t}**")
    cells.columns = [_md_escape(h) for h in grid.header]
    table = cells.to_markdown(
        index=False, tablefmt="pipe", colalign=_align(grid), disable_numparse=True
    )
    notes = "".join(f"{_md_escape(n)}  \n" for n in grid.notes)
    return f"{'#' * level} {grid.title}\n\n{table}\n" + (f"\n{notes}" if notes else "")


def to_latex(grid: Grid) -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``); two-line cells use ``\\shortstack``."""

    def stack(text: str) -> str:
        lines = text.split(r"\\ ")
        return lines[0] if len(lines) == 1 else r"\shortstack{" + text + "}"

    cells = _cells(
        grid,
        _tex_escape,
        r"\\ ",
        lambda t: r"\\ ".join(rf"\textbf{{{line}}}" for line in t.split(r"\\ ")),
    ).map(stack)
    cells.columns = [_tex_escape(h) for h in grid.header]
    body = cells.style.hide(axis="index").to_latex(
        column_format="ll" + "r" * (len(grid.header) - 2),
        position="t",
        position_float="centering",
        hrules=True,
        caption=_tex_escape(" ".join(grid.notes)) if grid.notes else None,
    )
    return "% requires \\usepackage{booktabs}\n" + body


def to_html_table(grid: Grid) -> str:
    """The grid as an HTML ``<table>`` (best cells have class ``best``), then its notes."""
    cells = _cells(grid, html.escape, "<br>", lambda t: t)
    cells.columns = [html.escape(h) for h in grid.header]
    styler = (
        cells.style.set_uuid(anchor(grid.title))
        .hide(axis="index")
        .set_td_classes(
            grid.best.astype(bool)
            .map(lambda b: "best" if b else "")
            .set_axis(cells.columns, axis=1)
        )
    )
    table = styler.to_html(table_attributes='class="report"', exclude_styles=False)
    notes = "".join(f'<p class="note">{html.escape(n)}</p>\n' for n in grid.notes)
    return f"<h2>{html.escape(grid.title)}</h2>\n{table}\n{notes}"


def anchor(title: str) -> str:
    """A title as an HTML id: ``Runs not counted`` -> ``runs-not-counted``."""
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower())


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|").replace("*", r"\*").replace("_", r"\_")


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "—": "--",
    "*": r"$^{*}$",
    "<": r"$<$",
    ">": r"$>$",
}


def _tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text).replace(r"$^{*}$$^{*}$", r"$^{**}$")


def write_text(path: Path, text: str) -> Path:
    """Write a report file whole or not at all: a full disk keeps the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path
