"""Assemble a :class:`Report` (table, statistics, cost, protocol) from experiment folders.

The pieces are pure functions of the loaded runs; this module only wires them together and
collects the store's warnings so that every renderer can list them.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from addrop_cli.data.metrics import GLUE_SCORE_FORMULA, Agg
from addrop_cli.report.aggregate import Epoch, Table, aggregate
from addrop_cli.report.bootstrap import RESAMPLES
from addrop_cli.report.comparisons import Comparison, Family, compare
from addrop_cli.report.cost import cost_frame
from addrop_cli.report.evidence import Behaviour, behaviours, degeneracy_warnings
from addrop_cli.report.frame import variant_keys
from addrop_cli.report.missing import Missing, find_missing
from addrop_cli.report.protocol import describe_protocol
from addrop_cli.store.reader import (
    RunRecord,
    StoreWarning,
    find_experiments,
    load_runs,
    spec_hash_order,
    spec_variant_order,
)

VERSION_CHARS = 7
"""How much of a spec hash labels a spec version in column names (``smoke@1a2b3c4/addrop``)."""


@dataclass(frozen=True)
class Report:
    """Everything a renderer shows, computed once."""

    experiments: tuple[Path, ...]
    table: Table
    comparisons: tuple[Comparison, ...]
    cost: pd.DataFrame = field(repr=False, compare=False)
    """One row per (task, variant): see :func:`aggregate.cost_frame`."""
    protocol: tuple[str, ...]
    glue_formula: str
    legend: str
    records: tuple[RunRecord, ...] = field(repr=False)
    warnings: tuple[str, ...] = ()
    missing: Missing = field(default_factory=Missing)
    """What the experiments' spec.yaml plans that no finished run has (report/missing.py)."""
    family: Family = field(default_factory=lambda: Family(0, 0, 0))
    """The comparisons the Holm correction runs over."""
    behaviour: tuple[Behaviour, ...] = field(default=(), repr=False)
    """What each cell's runs did (selected epochs, inactive method, identical predictions)."""

    @property
    def not_counted(self) -> tuple[RunRecord, ...]:
        """Runs that are not results: failed, unfinished, unreadable."""
        return tuple(r for r in self.records if r.status != "done")

    def comparison(self, task: str, variant: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.task == task and c.variant == variant), None)

    def bold(self, task: str, variant: str) -> bool:
        """A cell is bold only where it is its row's best and its difference from the reference
        is significant after the family's correction; otherwise nothing in the row is."""
        cell = self.table.cell(task, variant)
        comparison = self.comparison(task, variant)
        return bool(cell and cell.best and comparison and comparison.significant)


def build_report(
    paths: Sequence[Path],
    *,
    epoch: Epoch = "best",
    agg: Agg = "mean",
    reference: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    aso_iterations: int | None = None,
) -> Report:
    """Load every run under ``paths`` and compute the report (no files written).

    Raises :class:`~addrop_cli.errors.StoreError` for a missing or empty path and
    :class:`~addrop_cli.errors.SpecError` for an unknown reference.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        experiments = [e for p in paths for e in find_experiments(Path(p))]
        experiments = list(dict.fromkeys(experiments))
        per_folder = {e: separate_spec_versions(e, load_runs(e)) for e in experiments}
        records = [r for e in experiments for r in separate_namesakes(per_folder)[e]]
        order = [name for e in experiments for name in spec_variant_order(e)]
        table = aggregate(records, epoch=epoch, agg=agg, reference=reference, variant_order=order)
        comparisons, family = compare(
            table, resamples=resamples, seed=seed, aso_iterations=aso_iterations
        )
        found = behaviours(table)
    messages = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    messages += degeneracy_warnings(found, {t.name: t.display for t in table.tasks})
    for w in caught:  # pass on anything that is not the store's
        if not issubclass(w.category, StoreWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return Report(
        experiments=tuple(experiments),
        table=table,
        comparisons=tuple(comparisons),
        cost=cost_frame(table),
        protocol=tuple(describe_protocol(table)),
        glue_formula=GLUE_SCORE_FORMULA,
        legend=family.legend,
        records=tuple(records),
        warnings=tuple(dict.fromkeys(messages)),
        missing=find_missing(experiments, records),
        family=family,
        behaviour=tuple(found),
    )


def separate_spec_versions(experiment: Path, records: list[RunRecord]) -> list[RunRecord]:
    """Keep runs of different spec versions in one experiment folder from being mixed.

    When the folder's runs were started by several versions of the spec (their run.json
    ``spec_hash`` differ), a :class:`StoreWarning` says so. If the versions' run settings differ
    for some variant (a new learning rate, say), each version's runs are labelled with their
    version, so that the table shows them apart (``smoke@1a2b3c4/addrop``) instead of
    averaging them; versions that only added seeds or tasks stay merged. Sweep runs are left
    alone: their points are meant to differ.
    """
    order = spec_hash_order(experiment)
    counts = Counter(r.spec_hash for r in records if r.spec_hash and r.sweep_point is None)
    if len(counts) < 2:
        return records
    ranked = sorted(counts, key=lambda h: (order.index(h) if h in order else len(order), h))
    listing = ", ".join(f"{h[:VERSION_CHARS]}: {counts[h]} runs" for h in ranked)
    tagged = [
        replace(r, version=r.spec_hash[:VERSION_CHARS]) if r.spec_hash in counts else r
        for r in records
    ]
    split = any(key != name for (_, name), key in variant_keys(tagged).items())
    if split:
        name = tagged[0].experiment.split("@")[0]
        how = (
            "some variants' run settings differ between versions, so the table shows those "
            f"apart as {name}@<version>/<variant>"
        )
    else:
        how = "each variant has the same run settings in every version, so nothing is mixed"
    warnings.warn(
        f"{experiment}: holds runs from {len(counts)} spec versions ({listing}); {how}; "
        "spec_hash in each run's run.json says which version ran it",
        StoreWarning,
        stacklevel=2,
    )
    return tagged if split else records


def separate_namesakes(per_folder: dict[Path, list[RunRecord]]) -> dict[Path, list[RunRecord]]:
    """Keep experiments that share a name but not their settings (``addrop report A/smoke
    B/smoke``) from being mixed: group by what was run, not by name.

    When a variant's run settings differ between folders of one experiment name, each folder's
    runs are labelled with the folder they came from (``smoke@A/addrop``), and a
    :class:`StoreWarning` says so; variants run with the same settings stay one column.
    """
    by_name: dict[str, list[Path]] = {}
    for folder, records in per_folder.items():
        for name in dict.fromkeys(r.experiment for r in records):
            by_name.setdefault(name, []).append(folder)
    out = dict(per_folder)
    for name, folders in by_name.items():
        if len(folders) < 2:
            continue
        settings = {
            folder: {(r.variant, r.config.variant_identity()) for r in per_folder[folder]}
            for folder in folders
        }
        variants = {v: {i for f in folders for w, i in settings[f] if w == v}
                    for f in folders for v, _ in settings[f]}  # fmt: skip
        differ = sorted(v for v, ids in variants.items() if len(ids) > 1)
        if not differ:
            continue
        labels = _folder_labels(folders)
        for folder in folders:
            tag = labels[folder]
            out[folder] = [
                replace(r, version=f"{r.version}-{tag}" if r.version else tag)
                if r.experiment == name else r
                for r in per_folder[folder]
            ]  # fmt: skip
        warnings.warn(
            f"{', '.join(map(str, folders))} all hold experiment {name!r}, run with different "
            f"settings for {', '.join(differ)}; the table shows each folder's runs apart as "
            f"{name}@<folder>/<variant> instead of averaging them",
            StoreWarning,
            stacklevel=2,
        )
    return out


def _folder_labels(folders: list[Path]) -> dict[Path, str]:
    """The shortest trailing part of each folder's parents that tells the folders apart."""
    for depth in range(1, max(len(f.parts) for f in folders) + 1):
        labels = {f: "/".join(f.parent.parts[-depth:]) or str(f) for f in folders}
        if len(set(labels.values())) == len(folders):
            return labels
    return {f: str(i + 1) for i, f in enumerate(folders)}
