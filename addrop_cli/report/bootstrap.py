"""The interval of a difference between two variants, at the level the evidence has: seeds and
dev examples.

Every seed of both variants is scored on the same dev examples, so the seed-averaged difference
has two sources of uncertainty: which seeds were run (run-to-run variance) and which examples the
dev set happens to hold (test-set variance), and an example's effect recurs in every seed. The
**two-level bootstrap** (docs/statistics.md) resamples both, as Owen's pigeonhole bootstrap does
for crossed designs (Owen, 2007, *The pigeonhole bootstrap*, Ann. Appl. Stat. 1(2)):

* examples: one index set per resample, **shared by every seed** (per-seed draws would average
  the recurring example effects away and shrink that part of the variance by the seed count);
* seeds: the paired seeds drawn with replacement;
* small seed counts: a bootstrap of k seeds spreads like a z-interval with variance
  (k-1)/k of the sample's, too narrow at k = 5; the seed level's deviations are widened by
  ``sqrt(k/(k-1)) * t(k-1) / z`` (:func:`seed_scale`), so that with seed noise alone the interval
  is the paired t-interval (exact for normal seed effects); the factor tends to 1 with many seeds.

The **example-only** interval holds the seeds that ran fixed (the same shared indices): the
test-set part of the uncertainty, reported as such. The p-value is the two-level distribution's
two-sided percentile one, ``2 * min(P(d <= 0), P(d >= 0))``; it cannot resolve anything below
``2 / resamples`` (:func:`p_floor`). The store keeps best-epoch predictions only, so last-epoch
reports have no bootstrap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from addrop_cli.data.config import DataSpec
from addrop_cli.data.tasks import get_task
from addrop_cli.errors import AddropError
from addrop_cli.report.aggregate import Cell, TaskRow
from addrop_cli.report.stats import MIN_SEEDS, batch_metric
from addrop_cli.store.reader import StoreWarning

RESAMPLES = 10_000
"""Resamples of the two-level bootstrap: enough to print p down to 0.001 (see :func:`p_floor`)."""

_CHUNK = 4_000_000
"""Resampled examples held in memory at once (resamples x examples)."""


@dataclass(frozen=True)
class BootstrapCI:
    """The two-level bootstrap of one metric's difference (variant - reference)."""

    metric: str
    diff: float
    """Observed difference, averaged over the paired seeds."""
    low: float | None
    high: float | None
    """The two-level interval (seeds and examples): the headline; None with fewer than
    :data:`~addrop_cli.report.stats.MIN_SEEDS` paired seeds (too few to stand for new seeds)."""
    p: float | None
    """Two-sided percentile p of the two-level distribution (resolves no finer than
    :func:`p_floor`); None where the interval is."""
    example_low: float
    example_high: float
    """Seeds held fixed, examples resampled: the test-set part of the uncertainty."""
    level: float
    resamples: int
    n_examples: int
    seeds: tuple[int, ...]
    seed_scale: float
    """How much the seed level was widened for the small seed count (0 without a seed level)."""


def p_floor(resamples: int) -> float:
    """The smallest p a bootstrap of ``resamples`` can tell from zero, and never below 0.001:
    2 / resamples (one resample in either tail)."""
    return max(0.001, 2 / resamples)


def seed_scale(k: int, level: float) -> float:
    """The widening of the seed level for ``k`` seeds: sqrt(k/(k-1)) t_{k-1} / z (0 for one)."""
    if k < 2:
        return 0.0
    q = 1 - (1 - level) / 2
    return math.sqrt(k / (k - 1)) * float(stats.t.ppf(q, k - 1) / stats.norm.ppf(q))


def cell_bootstrap(
    row: TaskRow, cell: Cell, base: Cell, *, resamples: int, seed: int, level: float
) -> BootstrapCI | None:
    """The two-level bootstrap of the row's main metric from both cells' stored predictions."""
    split = _split_of(row)
    pairs: dict[int, tuple[dict, dict]] = {}
    base_runs = {r.seed: r for r in base.runs}
    for r in cell.runs:
        if r.seed not in base_runs:
            continue
        mine, theirs = r.predictions(), base_runs[r.seed].predictions()
        if mine and theirs and split in mine and split in theirs:
            pairs[r.seed] = (mine[split].model_dump(), theirs[split].model_dump())
    if not pairs:
        return None
    return paired_bootstrap(
        pairs,
        row.main_metric,
        resamples=resamples,
        seed=seed,
        level=level,
        where=row.display,
        num_labels=_num_labels(row, cell),
    )


def _num_labels(row: TaskRow, cell: Cell) -> int | None:
    """The task's label count: a metric's definition depends on it (None: not known)."""
    if row.info is not None:
        return row.info.num_labels
    for run in cell.runs:  # a custom task: its definition travels in each run's data settings
        try:
            return get_task(run.task, DataSpec.model_validate(run.config.data)).num_labels
        except (AddropError, ValueError):
            continue
    return None


def paired_bootstrap(
    pairs: Mapping[int, tuple[Mapping[str, Sequence], Mapping[str, Sequence]]],
    metric: str,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    where: str = "",
    num_labels: int | None = None,
) -> BootstrapCI | None:
    """The two-level bootstrap of ``metric(variant) - metric(reference)``, averaged over seeds.

    ``pairs`` maps a seed to (variant, reference) prediction records, each with ``guids``,
    ``predictions`` and ``labels``. Examples are matched on guid; the examples every seed holds
    are resampled. Deterministic for a given ``seed``.
    """
    seeds, var, ref, labels = _aligned(pairs, where)
    if not seeds or labels.size == 0:
        return None
    if num_labels is None:  # not known: the gold labels' classes (the same in every resample)
        num_labels = max(2, int(np.max(labels)) + 1)
    fn = batch_metric(metric, num_labels)
    per_seed = _resampled_differences(var, ref, labels, fn, resamples, np.random.default_rng(seed))
    observed = fn(var, np.broadcast_to(labels, var.shape)) - fn(
        ref, np.broadcast_to(labels, ref.shape)
    )
    k = len(seeds)
    examples = per_seed.mean(axis=1)
    tail = (1 - level) / 2
    ex_low, ex_high = np.quantile(examples, [tail, 1 - tail])
    low = high = p = None
    if k >= MIN_SEEDS:  # fewer seeds cannot stand for the seeds a new run would draw
        seeds_part = _seed_level(observed, resamples, seed)
        two_level = (
            float(np.mean(observed))
            + _example_level(per_seed, examples, float(np.var(seeds_part)) * k / (k - 1))
            + seed_scale(k, level) * seeds_part
        )
        low, high = (float(x) for x in np.quantile(two_level, [tail, 1 - tail]))
        p = min(1.0, 2 * min(float(np.mean(two_level <= 0)), float(np.mean(two_level >= 0))))
    return BootstrapCI(
        metric=metric,
        diff=float(np.mean(observed)),
        low=low,
        high=high,
        p=p,
        example_low=float(ex_low),
        example_high=float(ex_high),
        level=level,
        resamples=resamples,
        n_examples=int(labels.size),
        seeds=tuple(seeds),
        seed_scale=seed_scale(k, level) if k >= MIN_SEEDS else 0.0,
    )


def _seed_level(observed: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Deviations of the seed-averaged difference when the paired seeds are drawn again with
    replacement (the examples held at the whole dev set)."""
    k = len(observed)
    draws = np.random.default_rng([seed, 1]).multinomial(k, np.full(k, 1 / k), size=resamples)
    return draws @ observed / k - observed.mean()


def _example_level(per_seed: np.ndarray, examples: np.ndarray, seed_var: float) -> np.ndarray:
    """Deviations of the seed-averaged difference over resampled examples, shrunk to the example
    effects alone: the seed x example interaction is in the seed level already (each seed's
    score holds its own example noise), and counting it twice would make the interval too wide.
    Its share here is estimated from the same resamples: the per-seed variance minus the
    variance of the seed average, over k - 1 (a crossed design's variance decomposition). No
    more is taken out than the seed level holds (``seed_var``: the variance of the seed average
    it estimates), so the interval is never narrower than its examples-only part for seeds that
    happen to agree."""
    k = per_seed.shape[1]
    deviation = examples - examples.mean()
    v_mean = float(np.var(examples))
    if k < 2 or v_mean <= 0:
        return deviation
    interaction = (float(np.mean(np.var(per_seed, axis=0))) - v_mean) / (k - 1)
    removed = min(max(interaction, 0.0), seed_var)
    return deviation * math.sqrt(max(v_mean - removed, 0.0) / v_mean)


def example_indices(rng: np.random.Generator, rows: int, n: int, k: int) -> np.ndarray:
    """Resampled example indices for ``k`` seeds, shape (k, rows, n): ONE draw shared by every
    seed, since the seeds are scored on the same examples (a view, no copy)."""
    return np.broadcast_to(rng.integers(0, n, size=(rows, n)), (k, rows, n))


def _resampled_differences(
    var: np.ndarray, ref: np.ndarray, labels: np.ndarray, fn, resamples: int, rng
) -> np.ndarray:
    """(resamples x seeds): each seed's metric difference on each resample of the examples."""
    k, n = var.shape
    out = np.empty((resamples, k))
    step = max(1, _CHUNK // n)
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        idx = example_indices(rng, rows, n, k)
        for s in range(k):
            i = idx[s]
            out[start : start + rows, s] = fn(var[s][i], labels[i]) - fn(ref[s][i], labels[i])
    return out


def _aligned(
    pairs: Mapping[int, tuple[Mapping[str, Sequence], Mapping[str, Sequence]]], where: str
) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Seeds, variant and reference predictions (seeds x examples) and labels, on the guids that
    both variants of every seed hold, in the first seed's reference order."""
    seeds = sorted(pairs)
    if not seeds:
        return [], np.empty((0, 0)), np.empty((0, 0)), np.empty(0)
    tables = []
    for s in seeds:
        mine, theirs = pairs[s]
        tables.append(
            (
                {g: i for i, g in enumerate(mine["guids"])},
                {g: i for i, g in enumerate(theirs["guids"])},
            )
        )
    first = list(pairs[seeds[0]][1]["guids"])
    common = [g for g in first if all(g in m and g in t for m, t in tables)]
    largest = max(max(len(m), len(t)) for m, t in tables)
    if len(common) < largest:
        warnings.warn(
            f"{where}: the variants' dev predictions share {len(common)} of {largest} guids "
            "over the paired seeds; bootstrapping the shared ones",
            StoreWarning,
            stacklevel=4,
        )
    rows_var, rows_ref, rows_labels = [], [], []
    for s, (m, t) in zip(seeds, tables, strict=True):
        mine, theirs = pairs[s]
        rows_var.append(np.asarray(mine["predictions"])[[m[g] for g in common]])
        rows_ref.append(np.asarray(theirs["predictions"])[[t[g] for g in common]])
        rows_labels.append(np.asarray(theirs["labels"])[[t[g] for g in common]])
        mine_labels = np.asarray(mine["labels"])[[m[g] for g in common]]
        if not np.array_equal(mine_labels.astype(str), rows_labels[-1].astype(str)):
            warnings.warn(
                f"{where} seed {s}: the variants' dev labels differ for the same guids; using "
                "the reference's",
                StoreWarning,
                stacklevel=4,
            )
    if any(not np.array_equal(r.astype(str), rows_labels[0].astype(str)) for r in rows_labels):
        warnings.warn(
            f"{where}: the reference's dev labels differ between seeds for the same guids; "
            "using the first seed's",
            StoreWarning,
            stacklevel=4,
        )
    var, ref, labels = _numeric(np.stack(rows_var), np.stack(rows_ref), rows_labels[0])
    return seeds, var, ref, labels


def _numeric(*arrays: np.ndarray) -> list[np.ndarray]:
    """Class ids as int64, scores as float; label names (strings) encoded to shared ids."""
    if any(a.dtype.kind in "USO" for a in arrays):
        names = np.unique(np.concatenate([a.astype(str).ravel() for a in arrays]))
        return [np.searchsorted(names, a.astype(str)).astype(np.int64) for a in arrays]
    if all(a.dtype.kind in "iub" for a in arrays):
        return [a.astype(np.int64) for a in arrays]
    return [a.astype(float) for a in arrays]


def _split_of(row: TaskRow) -> str:
    """The dev split whose predictions give the row's main metric (MNLI: dev_matched)."""
    if row.info is not None:
        for split in row.info.dev_splits:
            if row.main_metric in row.info.metric_keys(split):
                return split
    return "dev"
