"""``addrop report``: build the report once, then print it and write the requested files."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from rich.console import Console

from addrop_cli.data.metrics import Agg
from addrop_cli.errors import EXIT_OK, SpecError, StoreError
from addrop_cli.registry import did_you_mean
from addrop_cli.report.aggregate import Epoch
from addrop_cli.report.budget import budget_markdown, print_budget, write_budget_plots
from addrop_cli.report.build import Report, build_report
from addrop_cli.report.export import stats_frame, table_frame, to_csv, to_json
from addrop_cli.report.frame import raw_frame
from addrop_cli.report.page import html_page
from addrop_cli.report.plots import png_files, write_plots
from addrop_cli.report.render import (
    cost_grid,
    grids,
    main_grid,
    print_terminal,
    to_latex,
    to_markdown,
    write_text,
)
from addrop_cli.store.atomic import store_error
from addrop_cli.store.reader import StoreWarning

FORMATS = ("terminal", "markdown", "csv", "latex", "html", "json")


def report_command(
    paths: list[Path],
    *,
    epoch: Literal["best", "last"] = "best",
    agg: Literal["mean", "median"] = "mean",
    reference: str | None = None,
    formats: Sequence[str] = ("terminal",),
    out: Path | None = None,
    plots: bool = True,
    raw: bool = False,
    console: Console | None = None,
) -> int:
    """Print the report and write files (``out``, default ``<first experiment>/report/``).

    ``raw`` also writes ``runs.csv``: the per-run frame (one row per run and evaluation, with
    identity columns), for users' own notebooks.

    Returns the exit code (0). Raises :class:`StoreError` for a missing or empty path and
    :class:`SpecError` for an unknown format or reference.
    """
    _check_formats(formats)
    if not paths:
        raise StoreError("addrop report: no folder given; pass one or more results/<name> folders")
    console = console or Console()
    report = build_report(paths, epoch=epoch, agg=agg, reference=reference)
    folder = out if out is not None else report.experiments[0] / "report"
    try:
        return _print_and_write(report, folder, formats, plots, raw, console)
    except OSError as err:  # an unwritable --out folder or a full disk: one line, no traceback
        raise store_error(folder, err, "--out DIR") from err


def _print_and_write(
    report: Report, folder: Path, formats: Sequence[str], plots: bool, raw: bool, console: Console
) -> int:
    written: list[Path] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        figures = write_plots(report, folder) if plots else []
        figures += write_budget_plots(report.records, folder) if plots else []
    late = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    report = _with_warnings(report, late)
    written += figures
    if "markdown" in formats:  # the HTML page comes with it, next to it
        md = write_markdown_report(folder / "report.md", report, plot_files=figures)
        written += [md, md.with_suffix(".html")]
    elif "html" in formats:
        written.append(write_html_report(folder / "report.html", report, plot_files=figures))
    if "csv" in formats:
        written.append(write_text(folder / "table.csv", to_csv(table_frame(report))))
        written.append(write_text(folder / "stats.csv", to_csv(stats_frame(report))))
        written.append(write_text(folder / "cost.csv", to_csv(report.cost)))
    if raw:
        written.append(write_text(folder / "runs.csv", to_csv(raw_frame(report.table.frame))))
    if "latex" in formats:
        tex = to_latex(main_grid(report)) + "\n" + to_latex(cost_grid(report))
        written.append(write_text(folder / "table.tex", tex))
    if "json" in formats:
        written.append(write_text(folder / "report.json", to_json(report)))
    # the files first: a reader that stops early (`| head`) must not cost them
    if "terminal" in formats:
        print_terminal(report, console)
        print_budget(report.records, console)
    if written:
        console.print(f"wrote {len(written)} files to {folder}", highlight=False)
    return EXIT_OK


def write_markdown_report(
    path: Path,
    report: Report | Sequence[Path],
    *,
    plot_files: Sequence[Path] | None = None,
    epoch: Epoch = "best",
    agg: Agg = "mean",
    reference: str | None = None,
) -> Path:
    """A Markdown report (tables, statistics, cost, runs not counted, plots) at ``path``, and
    the self-contained HTML page of the same report next to it (``path`` with ``.html``).

    ``report`` is a built :class:`Report`, or experiment folders to build one from (with
    ``epoch``, ``agg``, ``reference``). Plots are written beside ``path`` unless ``plot_files``
    lists figures already written. E.g. ``write_markdown_report(Path("results/quickstart/
    REPORT.md"), [Path("results/quickstart")])``.
    """
    if not isinstance(report, Report):
        report = build_report(list(report), epoch=epoch, agg=agg, reference=reference)
    if plot_files is None:
        plot_files = write_plots(report, path.parent)
    names = ", ".join(p.name for p in report.experiments)
    parts = [f"# Report: {names}\n"] + ([f"{report.missing.line}\n"] if report.missing.line else [])
    parts += [to_markdown(g) for g in grids(report)]
    parts += [s for s in [budget_markdown(report.records)] if s]  # sweeps: report/budget.py
    if report.warnings:
        parts.append("## Warnings\n\n" + "".join(f"- {w}\n" for w in report.warnings))
    pngs = png_files(plot_files)
    if pngs:
        lines = ["## Plots", ""]
        for png in pngs:
            rel = _relative(png, path.parent)
            svg = png.with_suffix(".svg")
            link = f" ([SVG]({_relative(svg, path.parent)}))" if svg in plot_files else ""
            lines += [f"![{png.stem}]({rel}){link}", ""]
        parts.append("\n".join(lines))
    write_html_report(path.with_suffix(".html"), report, plot_files=plot_files)
    return write_text(path, "\n".join(parts))


def write_html_report(path: Path, report: Report, *, plot_files: Sequence[Path] = ()) -> Path:
    """The self-contained HTML page (plots inlined) at ``path``."""
    return write_text(path, html_page(report, plot_files))


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _with_warnings(report: Report, extra: Sequence[str]) -> Report:
    return replace(report, warnings=tuple(dict.fromkeys((*report.warnings, *extra))))


def _check_formats(formats: Sequence[str]) -> None:
    problems = []
    for f in formats:
        if f not in FORMATS:
            hint = did_you_mean(f, FORMATS, after=" ")
            choices = ", ".join(FORMATS)
            problems.append(f"--format: unknown format {f!r}; {hint}choose from {choices}")
    if problems:
        raise SpecError(*problems)
