"""Render a :class:`~addrop_cli.report.build.Report`: terminal (Rich), Markdown, CSV, LaTeX, HTML
and JSON.

Every table is first laid out once as a :class:`Grid` of text cells (lines, best flag); each
format is then a small function of the grid, so formats cannot disagree on a number. Scores
are shown x100 with two decimals; CSV and JSON keep the raw fractions.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from addrop_cli.report.aggregate import Cell, GlueCell, TaskRow
from addrop_cli.report.build import Report

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
class GridCell:
    lines: tuple[str, ...]
    best: bool = False


@dataclass(frozen=True)
class Grid:
    """A rendered table: a header, rows of text cells, and notes printed under it."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[GridCell, ...], ...]
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Layout: report -> grids
# ---------------------------------------------------------------------------------------------


def main_grid(report: Report) -> Grid:
    """Tasks x variants, plus the GLUE row, with protocol, formula and legend as notes."""
    table = report.table
    rows = []
    for task in table.tasks:
        cells = [GridCell((task.display,)), GridCell((metric_label(task),))]
        for v in table.variants:
            cell = table.cell(task.name, v)
            comparison = report.comparison(task.name, v)
            cells.append(_cell(task, cell, comparison.marker if comparison else ""))
        rows.append(tuple(cells))
    notes = list(report.protocol)
    if table.glue is not None:
        rows.append(
            (GridCell(("GLUE",)), GridCell(("score",)))
            + tuple(_glue_cell(table.glue[v]) for v in table.variants)
        )
        notes.append(report.glue_formula + ".")
        covered = max((len(g.covered) for g in table.glue.values()), default=0)
        if covered < 9:
            notes.append(
                f"GLUE score here covers only the GLUE tasks in this table ({covered} of 9), "
                "so it is not comparable with full-benchmark scores."
            )
    notes.append("Best cell per row in bold. " + report.legend + ".")
    header = ("Task", "Metric", *(_variant_header(report, v) for v in table.variants))
    return Grid("Dev results", header, tuple(rows), tuple(notes))


def stats_grid(report: Report) -> Grid:
    """One row per (task, variant) compared with the reference."""
    header = (
        "Task",
        "Variant",
        "seeds",
        "paired Δ",
        "paired t p",
        "Wilcoxon p",
        "Welch p",
        "Holm p",
        "bootstrap Δ main [95% CI]",
        "boot p",
    )
    display = {t.name: t.display for t in report.table.tasks}
    rows = []
    for c in report.comparisons:
        b = c.bootstrap
        boot = (
            f"{_pct(b.diff, signed=True)} [{_pct(b.low, signed=True)}, "
            f"{_pct(b.high, signed=True)}] ({b.metric}, {len(b.seeds)} seeds x {b.n_examples})"
            if b
            else "—"
        )
        rows.append(
            tuple(
                GridCell((text,))
                for text in (
                    display.get(c.task, c.task),
                    c.variant,
                    str(c.seeds.n_paired),
                    _pct(c.seeds.mean_diff, signed=True),
                    _p(c.seeds.t_p),
                    _p(c.seeds.wilcoxon_p),
                    _p(c.seeds.welch_p),
                    _p(c.p_holm) + c.marker + (f" ({c.test})" if c.test == "Welch" else ""),
                    boot,
                    _p(b.p) if b else "—",
                )
            )
        )
    resamples = sorted({c.bootstrap.resamples for c in report.comparisons if c.bootstrap})
    notes = (
        f"Against {report.table.reference}. Seed tests on per-seed task scores (paired on shared "
        "seeds); Holm correction across tasks per variant, on the paired t-test (Welch's where no "
        "seed is shared).",
        f"Bootstrap: paired over dev examples matched on guid, "
        f"{'/'.join(map(str, resamples)) or 'no'} resamples, per seed then averaged over seeds; "
        "main metric, x100.",
    )
    return Grid("Statistics", header, tuple(rows), notes)


def cost_grid(report: Report) -> Grid:
    header = (
        "Task",
        "Variant",
        "runs",
        "wall time (s)",
        "train samples/s",
        "peak memory (MB)",
        "wall time x ref",
        "samples/s x ref",
    )
    display = {t.name: t.display for t in report.table.tasks}
    rows = tuple(
        tuple(
            GridCell((text,))
            for text in (
                display.get(c.task, c.task),
                c.variant,
                str(c.n),
                _num(c.wall_time_s, 1),
                _num(c.samples_per_s, 1),
                _num(c.peak_memory_mb, 0),
                _num(c.wall_ratio, 2, suffix="x"),
                _num(c.throughput_ratio, 2, suffix="x"),
            )
        )
        for c in report.cost
    )
    notes = (
        f"Means over finished runs (peak memory: the largest); ratios against "
        f"{report.table.reference} on the same task.",
    )
    return Grid("Cost", header, rows, notes)


def not_counted_grid(report: Report) -> Grid | None:
    runs = report.not_counted
    if not runs:
        return None
    header = ("Task", "Variant", "Seed", "Status", "Reason", "Run")
    rows = tuple(
        tuple(
            GridCell((text,))
            for text in (r.task, r.variant, str(r.seed), r.status, r.reason, str(r.path))
        )
        for r in sorted(runs, key=lambda r: (r.task, r.variant, r.seed))
    )
    return Grid("Runs not counted", header, rows)


def metric_label(task: TaskRow) -> str:
    return "/".join(METRIC_NAMES.get(m, m) for m in task.metrics)


def _cell(task: TaskRow, cell: Cell | None, mark: str) -> GridCell:
    if cell is None:
        return GridCell(("—",))
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
    return GridCell(tuple(lines), cell.best)


def _glue_cell(g: GlueCell) -> GridCell:
    if g.score is None:
        return GridCell(("—",))
    lines = [_pct(g.score)]
    extra = []
    if g.delta is not None:
        extra.append(f"Δ {_pct(g.delta, signed=True)}")
    if g.missing:
        extra.append(f"{len(g.covered)}/{len(g.covered) + len(g.missing)} tasks")
    if extra:
        lines.append(" ".join(extra))
    return GridCell(tuple(lines), g.best)


def _variant_header(report: Report, variant: str) -> str:
    return f"{variant} (ref)" if variant == report.table.reference else variant


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _pct(value: float | None, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def _num(value: float | None, digits: int, suffix: str = "") -> str:
    return "—" if value is None else f"{value:,.{digits}f}{suffix}"


def grids(report: Report) -> list[Grid]:
    """Every table of the report, in reading order."""
    out = [main_grid(report), stats_grid(report), cost_grid(report)]
    extra = not_counted_grid(report)
    return out + ([extra] if extra else [])


# ---------------------------------------------------------------------------------------------
# Formats: grid -> text
# ---------------------------------------------------------------------------------------------


def to_rich(grid: Grid) -> RichTable:
    table = RichTable(title=grid.title, caption="\n".join(grid.notes) or None, show_lines=True)
    table.caption_justify = "left"
    for i, name in enumerate(grid.header):
        table.add_column(name, justify="left" if i < 2 else "right")
    for row in grid.rows:
        table.add_row(
            *(Text("\n".join(c.lines), style="bold green" if c.best else "") for c in row)
        )
    return table


def print_terminal(report: Report, console: Console) -> None:
    for grid in grids(report):
        console.print(to_rich(grid))
    for message in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def to_markdown(grid: Grid, level: int = 2) -> str:
    def cell(c: GridCell) -> str:
        text = "<br>".join(_md_escape(line) for line in c.lines)
        return f"**{text}**" if c.best else text

    lines = [f"{'#' * level} {grid.title}", ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in grid.header) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["--:"] * (len(grid.header) - 2)) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in grid.rows]
    if grid.notes:
        lines.append("")
        lines += [_md_escape(n) + "  " for n in grid.notes]
    return "\n".join(lines) + "\n"


def to_latex(grid: Grid) -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``); two-line cells use ``\\shortstack``."""

    def cell(c: GridCell) -> str:
        lines = [_tex_escape(line) for line in c.lines]
        if c.best:
            lines = [rf"\textbf{{{line}}}" for line in lines]
        return lines[0] if len(lines) == 1 else r"\shortstack{" + r"\\ ".join(lines) + "}"

    spec = "ll" + "r" * (len(grid.header) - 2)
    out = [
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_tex_escape(h) for h in grid.header) + r" \\",
        r"\midrule",
    ]
    out += [" & ".join(cell(c) for c in row) + r" \\" for row in grid.rows]
    out += [r"\bottomrule", r"\end{tabular}"]
    if grid.notes:
        out.append(rf"\caption{{{_tex_escape(' '.join(grid.notes))}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def to_html(grids_: Sequence[Grid], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}"
        "td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}.best{font-weight:bold}"
        "p.note{margin:0.2em 0;color:#444}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    for grid in grids_:
        parts.append(f"<h2>{html.escape(grid.title)}</h2><table><thead><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in grid.header]
        parts.append("</tr></thead><tbody>")
        for row in grid.rows:
            parts.append("<tr>")
            for c in row:
                text = "<br>".join(html.escape(line) for line in c.lines)
                parts.append(f'<td class="best">{text}</td>' if c.best else f"<td>{text}</td>")
            parts.append("</tr>")
        parts.append("</tbody></table>")
        parts += [f'<p class="note">{html.escape(n)}</p>' for n in grid.notes]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


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


# ---------------------------------------------------------------------------------------------
# Machine-readable: CSV rows and JSON
# ---------------------------------------------------------------------------------------------


def table_records(report: Report) -> list[dict[str, Any]]:
    """One row per (task, variant, metric) of the main table, raw fractions; plus GLUE rows."""
    out = []
    table = report.table
    for task in table.tasks:
        for v in table.variants:
            cell = table.cell(task.name, v)
            if cell is None:
                continue
            c = report.comparison(task.name, v)
            for m in (*task.metrics, "score"):
                s = cell.score if m == "score" else cell.metrics[m]
                delta = cell.score_delta if m == "score" else (cell.delta or {}).get(m)
                out.append(
                    {
                        "task": task.name,
                        "variant": v,
                        "metric": m,
                        "epoch": table.epoch,
                        "agg": table.agg,
                        "center": s.center,
                        "std": s.std,
                        "n": cell.n,
                        "expected": cell.expected,
                        "delta": delta,
                        "p_holm": c.p_holm if c else None,
                        "marker": c.marker if c else "",
                        "best": cell.best,
                        "is_reference": v == table.reference,
                    }
                )
    for v, g in (table.glue or {}).items():
        out.append(
            {
                "task": "glue",
                "variant": v,
                "metric": "glue_score",
                "epoch": table.epoch,
                "agg": table.agg,
                "center": g.score,
                "std": None,
                "n": len(g.covered),
                "expected": len(g.covered) + len(g.missing),
                "delta": g.delta,
                "p_holm": None,
                "marker": "",
                "best": g.best,
                "is_reference": v == table.reference,
            }
        )
    return out


def stats_records(report: Report) -> list[dict[str, Any]]:
    out = []
    for c in report.comparisons:
        b = c.bootstrap
        out.append(
            {
                "task": c.task,
                "variant": c.variant,
                "reference": c.reference,
                "n_paired": c.seeds.n_paired,
                "mean_diff": c.seeds.mean_diff,
                "paired_t_p": c.seeds.t_p,
                "wilcoxon_p": c.seeds.wilcoxon_p,
                "welch_p": c.seeds.welch_p,
                "test": c.test,
                "p_holm": c.p_holm,
                "marker": c.marker,
                "bootstrap_metric": b.metric if b else None,
                "bootstrap_diff": b.diff if b else None,
                "bootstrap_low": b.low if b else None,
                "bootstrap_high": b.high if b else None,
                "bootstrap_p": b.p if b else None,
                "bootstrap_level": b.level if b else None,
                "bootstrap_resamples": b.resamples if b else None,
                "bootstrap_examples": b.n_examples if b else None,
                "bootstrap_seeds": list(b.seeds) if b else None,
            }
        )
    return out


def cost_records(report: Report) -> list[dict[str, Any]]:
    return [asdict(c) for c in report.cost]


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return buffer.getvalue()


def to_json(report: Report) -> str:
    """Every aggregate, with the per-seed values behind each cell."""
    table = report.table
    cells = []
    for (task, variant), cell in sorted(table.cells.items()):
        cells.append(
            {
                "task": task,
                "variant": variant,
                "seed_scores": {str(s): v for s, v in cell.seed_scores.items()},
                "seed_metrics": {str(s): dict(m) for s, m in cell.seed_metrics.items()},
                "metrics": {m: asdict(s) for m, s in cell.metrics.items()},
                "score": asdict(cell.score),
                "expected": cell.expected,
                "missing": {str(s): why for s, why in cell.missing.items()},
                "point": dict(cell.point) if cell.point else None,
                "protocol": cell.protocol,
                "delta": dict(cell.delta) if cell.delta else None,
                "score_delta": cell.score_delta,
                "best": cell.best,
                "runs": [r.run_id for r in cell.runs],
            }
        )
    doc = {
        "format": 1,
        "experiments": [str(p) for p in report.experiments],
        "epoch": table.epoch,
        "agg": table.agg,
        "reference": table.reference,
        "protocol": list(report.protocol),
        "glue_formula": report.glue_formula,
        "legend": report.legend,
        "tasks": [
            {"name": t.name, "display": t.display, "metrics": list(t.metrics)}
            | {"main_metric": t.main_metric}
            for t in table.tasks
        ],
        "variants": [
            {
                "key": v,
                "name": table.variant_info[v].name,
                "experiments": list(table.variant_info[v].experiments),
                "method": table.variant_info[v].method,
                "method_params": dict(table.variant_info[v].method_params),
            }
            for v in table.variants
        ],
        "cells": cells,
        "glue": {v: asdict(g) for v, g in (table.glue or {}).items()},
        "table": table_records(report),
        "statistics": stats_records(report),
        "cost": cost_records(report),
        "runs": [
            {
                "run_id": r.run_id,
                "path": str(r.path),
                "task": r.task,
                "variant": r.variant,
                "seed": r.seed,
                "status": r.status,
                "reason": r.reason,
            }
            for r in report.records
        ],
        "warnings": list(report.warnings),
    }
    return json.dumps(_finite(doc), indent=2, default=str, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return "" if value is None else value


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
