"""Curves over a numeric factor (``factors: {data.train_size: [...]}``): the main metric of
each variant at every factor value, and each variant's paired difference from the reference.

The table keeps every factor point as a row of its own (:func:`frame.row_key`); a curve strings
the rows of one task along one numeric factor (the other factors held at one point each).

* **Bands**: mean over seeds and a 95% t-interval of that mean, per variant and value, clipped
  to the values the metric can take (two seeds' interval is wide enough to leave them).
* **Differences**: per value, the variant minus the reference on the main metric, paired by
  seed; the paired t-test's p-value Holm-corrected over the report's whole family of
  comparisons, and the two-level bootstrap interval of :mod:`addrop_cli.report.bootstrap`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from addrop_cli.data.metrics import score_bounds
from addrop_cli.report.aggregate import Table, TaskRow
from addrop_cli.report.build import Report
from addrop_cli.report.stats import seed_tests
from addrop_cli.store.identity import point_label


@dataclass(frozen=True)
class Curve:
    """One task's rows along one numeric factor, in increasing factor value."""

    task: str
    display: str
    factor: str
    """The factor's spec path (``data.train_size``)."""
    others: str
    """The other factors' point, shown in titles ("" with one factor)."""
    rows: tuple[tuple[float, TaskRow], ...]

    @property
    def title(self) -> str:
        fixed = f", {self.others}" if self.others else ""
        return f"{self.display}: {self.metric} against {self.factor}{fixed}"

    @property
    def metric(self) -> str:
        return self.rows[0][1].main_metric

    @property
    def log_x(self) -> bool:
        """A log axis where the values are positive and span a decade or more."""
        xs = [x for x, _ in self.rows]
        return min(xs) > 0 and max(xs) / min(xs) >= 10


def factor_curves(table: Table) -> list[Curve]:
    """Every curve the table's rows make: per task, per numeric factor with two or more values."""
    groups: dict[tuple[str, str, str], list[tuple[float, TaskRow]]] = {}
    for row in table.tasks:
        for path, value in (row.factors or {}).items():
            if not _numeric(value):
                continue
            others = {k: v for k, v in row.factors.items() if k != path}  # type: ignore[union-attr]
            groups.setdefault((row.task, path, point_label(others)), []).append((float(value), row))
    return [
        Curve(task, points[0][1].info.display if points[0][1].info else task, path, others,
              tuple(sorted(points, key=lambda p: p[0])))
        for (task, path, others), points in groups.items()
        if len(points) > 1
    ]  # fmt: skip


def band_frame(table: Table, curve: Curve) -> pd.DataFrame:
    """variant, x, n, mean, low, high: the main metric over seeds (95% t-interval)."""
    out = []
    for x, row in curve.rows:
        for variant in table.variants:
            values = _main_by_seed(table, row, variant)
            if not values:
                continue
            scores = list(values.values())
            mean, half = float(np.mean(scores)), t_halfwidth(scores)
            floor, ceiling = score_bounds([row.main_metric])
            out.append(
                {"variant": variant, "x": x, "n": len(scores), "mean": mean}
                | {"low": max(floor, mean - half), "high": min(ceiling, mean + half)}
            )
    return pd.DataFrame(out, columns=["variant", "x", "n", "mean", "low", "high"])


def difference_frame(report: Report, curve: Curve) -> pd.DataFrame:
    """variant, x, seeds, diff, t_p, p_holm, boot_low, boot_high: each variant minus the
    reference at every factor value (paired by seed; Holm over the report's whole family)."""
    table = report.table
    out = []
    for variant in table.variants[1:]:
        rows = []
        for x, row in curve.rows:
            mine = _main_by_seed(table, row, variant)
            ref = _main_by_seed(table, row, table.reference)
            if not mine or not ref:
                continue
            tests = seed_tests(mine, ref)
            comparison = report.comparison(row.name, variant)
            boot = comparison.bootstrap if comparison else None
            rows.append(
                {"variant": variant, "x": x, "seeds": tests.n_paired, "diff": tests.mean_diff}
                | {"t_p": tests.t_p, "p_holm": comparison.p_holm if comparison else None}
                | {"boot_low": boot.low if boot else None, "boot_high": boot.high if boot else None}
            )
        out.extend(rows)
    columns = ["variant", "x", "seeds", "diff", "t_p", "p_holm", "boot_low", "boot_high"]
    return pd.DataFrame(out, columns=columns)


def _main_by_seed(table: Table, row: TaskRow, variant: str) -> Mapping[int, float]:
    """Seed -> the row's main metric for the variant's finished runs."""
    cell = table.cell(row.name, variant)
    if cell is None:
        return {}
    return {
        seed: metrics[row.main_metric]
        for seed, metrics in cell.seed_metrics.items()
        if row.main_metric in metrics
    }


def t_halfwidth(values: Sequence[float]) -> float:
    """Half the 95% t-interval of the mean (0 for one value)."""
    if len(values) < 2:
        return 0.0
    sem = np.std(values, ddof=1) / math.sqrt(len(values))
    return float(stats.t.ppf(0.975, len(values) - 1) * sem)


def _numeric(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
