"""Assemble a :class:`Report` (table, statistics, cost, protocol) from experiment folders.

The pieces are pure functions of the loaded runs; this module only wires them together and
collects the store's warnings so that every renderer can list them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from addrop_cli.metrics import GLUE_SCORE_FORMULA
from addrop_cli.report.aggregate import (
    Agg,
    CostRow,
    Epoch,
    Table,
    aggregate,
    cost_rows,
    describe_protocol,
)
from addrop_cli.report.load import (
    RunRecord,
    StoreWarning,
    find_experiments,
    load_runs,
    spec_variant_order,
)
from addrop_cli.report.stats import MARKER_LEGEND, Comparison, compare


@dataclass(frozen=True)
class Report:
    """Everything a renderer shows, computed once."""

    experiments: tuple[Path, ...]
    table: Table
    comparisons: tuple[Comparison, ...]
    cost: tuple[CostRow, ...]
    protocol: tuple[str, ...]
    glue_formula: str
    legend: str
    records: tuple[RunRecord, ...] = field(repr=False)
    warnings: tuple[str, ...] = ()

    @property
    def not_counted(self) -> tuple[RunRecord, ...]:
        """Runs that are not results: failed, unfinished, unreadable."""
        return tuple(r for r in self.records if r.status != "done")

    def comparison(self, task: str, variant: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.task == task and c.variant == variant), None)


def build_report(
    paths: Sequence[Path],
    *,
    epoch: Epoch = "best",
    agg: Agg = "mean",
    reference: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> Report:
    """Load every run under ``paths`` and compute the report (no files written).

    Raises :class:`~addrop_cli.errors.StoreError` for a missing or empty path and
    :class:`~addrop_cli.errors.SpecError` for an unknown reference.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        experiments = [e for p in paths for e in find_experiments(Path(p))]
        experiments = list(dict.fromkeys(experiments))
        records = [r for e in experiments for r in load_runs(e)]
        order = [name for e in experiments for name in spec_variant_order(e)]
        table = aggregate(records, epoch=epoch, agg=agg, reference=reference, variant_order=order)
        comparisons = compare(table, resamples=resamples, seed=seed)
    messages = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    for w in caught:  # pass on anything that is not the store's
        if not issubclass(w.category, StoreWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return Report(
        experiments=tuple(experiments),
        table=table,
        comparisons=tuple(comparisons),
        cost=tuple(cost_rows(table)),
        protocol=tuple(describe_protocol(table, records)),
        glue_formula=GLUE_SCORE_FORMULA,
        legend=MARKER_LEGEND,
        records=tuple(records),
        warnings=tuple(dict.fromkeys(messages)),
    )
