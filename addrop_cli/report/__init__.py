"""Reports: read the results store, aggregate over seeds, test, render and plot.

Reports only read the store (``load``) into one tidy pandas frame (``frame.run_frame``: one row
per run and evaluation); aggregation (``aggregate``, ``stats``) is pandas on that frame;
``render`` and ``plots`` turn a built :class:`Report` into text and figures; ``command`` is the
``addrop report`` entry point. Sweep code can reuse :func:`load_runs`, :func:`aggregate` and
:func:`summarize` to choose hyperparameters from stored runs.
"""

from addrop_cli.data.metrics import Summary, summarize
from addrop_cli.report.aggregate import Cell, GlueCell, Table, aggregate
from addrop_cli.report.bootstrap import BootstrapCI, paired_bootstrap
from addrop_cli.report.build import Report, build_report
from addrop_cli.report.command import (
    FORMATS,
    report_command,
    write_html_report,
    write_markdown_report,
)
from addrop_cli.report.comparisons import Comparison, Family, compare
from addrop_cli.report.cost import cost_frame
from addrop_cli.report.frame import TaskRow, raw_frame, run_frame, variant_keys
from addrop_cli.report.plots import write_plots
from addrop_cli.report.protocol import describe_protocol
from addrop_cli.report.stats import SeedTests, holm, seed_tests
from addrop_cli.store.reader import RunRecord, StoreWarning, find_experiments, load_runs

__all__ = [
    "FORMATS",
    "BootstrapCI",
    "Cell",
    "Comparison",
    "Family",
    "GlueCell",
    "Report",
    "RunRecord",
    "SeedTests",
    "StoreWarning",
    "Summary",
    "Table",
    "TaskRow",
    "aggregate",
    "build_report",
    "compare",
    "cost_frame",
    "describe_protocol",
    "find_experiments",
    "holm",
    "load_runs",
    "paired_bootstrap",
    "raw_frame",
    "report_command",
    "run_frame",
    "seed_tests",
    "summarize",
    "variant_keys",
    "write_html_report",
    "write_markdown_report",
    "write_plots",
]
