"""The HTML report: one self-contained page (tables, statistics, cost, protocol, plots).

Plots are inlined as ``data:`` URIs and the style sheet is in the page, so the file can be
mailed, attached to an issue or opened from a cluster's scratch folder with no network and no
folder of figures beside it. Wide tables scroll sideways inside their box, so the page reads on
a laptop screen.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from addrop_cli.report.build import Report
from addrop_cli.report.plots import png_files
from addrop_cli.report.render import anchor, grids, to_html_table

STYLE = """
:root{color-scheme:light;--ink:#1d2430;--muted:#5b6472;--line:#d9dee5;--best:#e8f5e9}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
 background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:1em 2em}
header h1{margin:0;font-size:1.4em}
header p{margin:.3em 0 0;color:#c9d1dc}
nav{display:flex;gap:1.2em;flex-wrap:wrap;margin-top:.6em}
nav a{color:#9fd0ff;text-decoration:none}
main{max-width:1280px;margin:0 auto;padding:1em 2em 3em}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.8em 1.2em;
 margin:1.2em 0}
h2{font-size:1.15em;margin:.4em 0 .6em}
.scroll{overflow-x:auto}
table.report{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.4em 0}
table.report th,table.report td{border:1px solid var(--line);padding:4px 10px;text-align:right;
 vertical-align:top;white-space:nowrap}
table.report th{background:#eef1f5;position:sticky;top:0}
table.report td:nth-child(-n+2),table.report th:nth-child(-n+2){text-align:left}
table.report tbody tr:nth-child(even){background:#fafbfc}
table.report td.best{font-weight:700;background:var(--best)}
p.note{margin:.2em 0;color:var(--muted);font-size:.92em}
ul.warnings li{color:#8a4b00}
figure{margin:1em 0}
figure img{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{color:var(--muted);font-size:.9em}
"""


def html_page(report: Report, plot_files: Sequence[Path] = ()) -> str:
    """The whole page as one string."""
    names = ", ".join(p.name for p in report.experiments)
    sections = [(anchor(g.title), g.title, to_html_table(g)) for g in grids(report)]
    if report.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
        sections.append(
            ("warnings", "Warnings", f'<h2>Warnings</h2><ul class="warnings">{items}</ul>')
        )
    pngs = png_files(plot_files)
    if pngs:
        figures = "".join(_figure(p) for p in pngs)
        sections.append(("plots", "Plots", f"<h2>Plots</h2>{figures}"))
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    body = "".join(
        f'<section id="{a}"><div class="scroll">{content}</div></section>\n'
        for a, _, content in sections
    )
    runs = len(report.records)
    counted = len(report.records) - len(report.not_counted)
    line = html.escape(report.missing.line)
    partial = f'<p class="partial">{line}</p>' if line else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Report: {html.escape(names)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
        f"<header><h1>Report: {html.escape(names)}</h1>"
        f"<p>{counted} of {runs} runs counted; {report.table.epoch} epoch, "
        f"{report.table.agg} over seeds, against {html.escape(report.table.reference)}</p>"
        f"{partial}<nav>{nav}</nav></header>\n<main>\n{body}</main>\n</body></html>\n"
    )


def _figure(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    name = html.escape(png.stem)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{name}">'
        f"<figcaption>{name}</figcaption></figure>"
    )
