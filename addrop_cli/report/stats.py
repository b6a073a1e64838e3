"""Significance of each variant's difference from the reference, per task.

Two kinds of evidence, both reported:

* **Over seeds** (run-to-run variance), on the per-seed task scores: the paired t-test and the
  Wilcoxon signed-rank test on the seeds both variants finished (same seed = same data order and
  head initialisation, so the pairs are real), and Welch's t-test on all finished seeds. The
  significance markers of the table use the paired t-test (Welch's when no seed is shared),
  Holm-corrected across the tasks of each variant.
* **Over dev examples** (test-set sampling variance), a paired bootstrap of the difference in the
  task's main metric, from the stored dev predictions at the best epoch. Per seed, the dev
  examples of both variants are matched on guid and resampled with the same indices; the
  per-seed differences are averaged over seeds within each resample ("per seed, then average"),
  so the interval is for the seed-averaged difference and reflects example sampling only.
  The p-value is the two-sided percentile one, ``2 * min(P(d <= 0), P(d >= 0))``. The store
  keeps best-epoch predictions only, so last-epoch reports have no bootstrap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from addrop_cli.data.metrics import METRICS, base_metric
from addrop_cli.report.aggregate import Cell, Table, TaskRow
from addrop_cli.store.reader import StoreWarning

MARKERS = ((0.01, "**"), (0.05, "*"))
"""(threshold, marker) on Holm-adjusted p-values, strictest first."""

MARKER_LEGEND = "* p<0.05, ** p<0.01 (paired t-test over seeds, Holm-corrected across tasks)"

MIN_SEEDS = 3
"""Fewest seeds a test over seeds is run on. With two, a t-test has one degree of freedom (its
95% interval is +-12.7 standard errors) and the Wilcoxon test cannot reach p < 0.5: the report
says "not enough seeds for a test" rather than print a p-value that means nothing."""

NOT_ENOUGH_SEEDS = f"not enough seeds for a test (needs {MIN_SEEDS})"

_CHUNK = 4_000_000
"""Resampled examples held in memory at once (resamples x examples)."""


@dataclass(frozen=True)
class SeedTests:
    """Tests on per-seed task scores of a variant against the reference."""

    n_paired: int
    mean_diff: float | None
    """Mean of the paired differences (variant - reference)."""
    t_p: float | None
    """Paired t-test p-value (needs 2 shared seeds whose differences are not all equal)."""
    wilcoxon_p: float | None
    """Wilcoxon signed-rank p-value (needs a non-zero paired difference)."""
    welch_p: float | None
    """Welch's t-test p-value on all finished seeds (needs 2 per side)."""


@dataclass(frozen=True)
class BootstrapCI:
    """Paired bootstrap over dev examples of the difference in one metric."""

    metric: str
    diff: float
    """Observed difference (variant - reference), averaged over seeds."""
    low: float
    high: float
    p: float
    level: float
    resamples: int
    n_examples: int
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Comparison:
    """Everything known about one (task, variant) against the reference."""

    task: str
    variant: str
    reference: str
    seeds: SeedTests
    test: str | None
    """The test behind the marker: "paired t", "Welch", or None when none applies."""
    p_holm: float | None
    marker: str
    bootstrap: BootstrapCI | None


def seed_tests(
    variant: Mapping[int, float], reference: Mapping[int, float], *, min_seeds: int = MIN_SEEDS
) -> SeedTests:
    """Paired t, Wilcoxon signed-rank and Welch tests of seed -> score mappings; each only with
    ``min_seeds`` seeds or more (paired: shared seeds; Welch: on each side), else None."""
    shared = sorted(variant.keys() & reference.keys())
    a = np.array([variant[s] for s in shared], dtype=float)
    b = np.array([reference[s] for s in shared], dtype=float)
    diff = a - b
    t_p = wilcoxon_p = welch_p = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant inputs: p is nan -> None
        paired = len(shared) >= max(2, min_seeds)
        if paired and not _constant(diff):
            t_p = _p(stats.ttest_rel(a, b).pvalue)
        if paired and np.any(diff != 0):
            wilcoxon_p = _p(stats.wilcoxon(a, b).pvalue)
        if min(len(variant), len(reference)) >= max(2, min_seeds):
            welch_p = _p(
                stats.ttest_ind(
                    list(variant.values()), list(reference.values()), equal_var=False
                ).pvalue
            )
    return SeedTests(
        len(shared), float(diff.mean()) if len(shared) else None, t_p, wilcoxon_p, welch_p
    )


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni step-down adjusted p-values (None entries are skipped, kept as None)."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def marker(p: float | None) -> str:
    """``**`` below 0.01, ``*`` below 0.05, else empty."""
    if p is None:
        return ""
    return next((mark for threshold, mark in MARKERS if p < threshold), "")


def compare(
    table: Table,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_seeds: int = MIN_SEEDS,
) -> list[Comparison]:
    """Every non-reference cell against the reference cell of its task."""
    pending: list[tuple[Cell, Cell, TaskRow, SeedTests, str | None, float | None]] = []
    for row in table.tasks:
        base = table.cell(row.name, table.reference)
        if base is None:
            continue
        for v in table.variants[1:]:
            cell = table.cell(row.name, v)
            if cell is None:
                continue
            tests = seed_tests(cell.seed_scores, base.seed_scores, min_seeds=min_seeds)
            paired = tests.t_p is not None
            which, p = ("paired t", tests.t_p) if paired else ("Welch", tests.welch_p)
            pending.append((cell, base, row, tests, which if p is not None else None, p))
    adjusted: list[float | None] = [None] * len(pending)
    for v in table.variants[1:]:
        idx = [i for i, item in enumerate(pending) if item[0].variant == v]
        for i, p in zip(idx, holm([pending[i][5] for i in idx]), strict=True):
            adjusted[i] = p
    return [
        Comparison(
            task=row.name,
            variant=cell.variant,
            reference=base.variant,
            seeds=tests,
            test=which,
            p_holm=p_holm,
            marker=marker(p_holm),
            bootstrap=None  # predictions.json holds the best epoch's predictions only
            if table.epoch != "best"
            else cell_bootstrap(row, cell, base, resamples=resamples, seed=seed, level=level),
        )
        for (cell, base, row, tests, which, _), p_holm in zip(pending, adjusted, strict=True)
    ]


def cell_bootstrap(
    row: TaskRow, cell: Cell, base: Cell, *, resamples: int, seed: int, level: float
) -> BootstrapCI | None:
    """The paired bootstrap of the row's main metric from both cells' stored predictions."""
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
        pairs, row.main_metric, resamples=resamples, seed=seed, level=level, where=row.display
    )


def paired_bootstrap(
    pairs: Mapping[int, tuple[Mapping[str, Sequence], Mapping[str, Sequence]]],
    metric: str,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    where: str = "",
) -> BootstrapCI | None:
    """Bootstrap CI of ``metric(variant) - metric(reference)``, averaged over seeds.

    ``pairs`` maps a seed to (variant, reference) prediction records, each with ``guids``,
    ``predictions`` and ``labels``. Examples are matched on guid (the reference's order).
    Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    diffs = np.zeros(resamples)
    observed: list[float] = []
    n_examples = 0
    fn = batch_metric(metric)
    for s in sorted(pairs):
        mine, theirs = pairs[s]
        p_var, p_ref, labels = _matched(mine, theirs, where=f"{where} seed {s}")
        n = len(labels)
        if n == 0:
            continue
        n_examples = max(n_examples, n)
        observed.append(float(fn(p_var[None], labels[None])[0] - fn(p_ref[None], labels[None])[0]))
        step = max(1, _CHUNK // n)
        for start in range(0, resamples, step):
            idx = rng.integers(0, n, size=(min(step, resamples - start), n))
            chunk = fn(p_var[idx], labels[idx]) - fn(p_ref[idx], labels[idx])
            diffs[start : start + len(idx)] += chunk
    if not observed:
        return None
    diffs /= len(observed)
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    p = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    return BootstrapCI(
        metric=metric,
        diff=float(np.mean(observed)),
        low=float(low),
        high=float(high),
        p=p,
        level=level,
        resamples=resamples,
        n_examples=n_examples,
        seeds=tuple(sorted(pairs)),
    )


# ---------------------------------------------------------------------------------------------
# Metrics over many resamples at once (rows of a 2-D array); same definitions as metrics.py
# ---------------------------------------------------------------------------------------------


def batch_metric(metric_key: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function scoring each row of (resamples x examples) arrays with ``metric_key``.

    The common GLUE metrics are vectorised here; any other metric of
    :data:`addrop_cli.data.metrics.METRICS` is applied row by row.
    """
    name = base_metric(metric_key)
    if name in _BATCH:
        return _BATCH[name]
    fn = METRICS[name].fn
    return lambda p, y: np.array([fn(pr, yr) for pr, yr in zip(p, y, strict=True)])


def _confusion(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row confusion matrices (rows x true x predicted) of class-id arrays."""
    p, y = p.astype(np.int64), y.astype(np.int64)
    k = int(max(p.max(), y.max())) + 1
    rows = p.shape[0]
    flat = (np.arange(rows)[:, None] * k * k + y * k + p).ravel()
    return np.bincount(flat, minlength=rows * k * k).reshape(rows, k, k).astype(float)


def _accuracy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.mean(p == y, axis=1)


def _f1(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row, as metrics.py: F1 of class 1 when only classes 0 and 1 occur, else the macro F1
    over the classes that occur."""
    c = _confusion(p, y)
    tp = np.diagonal(c, axis1=1, axis2=2)
    fp, fn = c.sum(axis=1) - tp, c.sum(axis=2) - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    macro = np.sum(f1 * present, axis=1) / np.maximum(present.sum(axis=1), 1)
    if c.shape[1] < 2:
        return np.zeros(len(c))
    binary = ~present[:, 2:].any(axis=1)
    return np.where(binary, f1[:, 1], macro)


def _mcc(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Multi-class Matthews correlation (scikit-learn's formula; 0 where undefined)."""
    c = _confusion(p, y)
    t, q = c.sum(axis=2), c.sum(axis=1)  # true and predicted counts per class
    correct = np.trace(c, axis1=1, axis2=2)
    total = c.sum(axis=(1, 2))
    cov_ytyp = correct * total - np.sum(t * q, axis=1)
    cov_ypyp = total**2 - np.sum(q * q, axis=1)
    cov_ytyt = total**2 - np.sum(t * t, axis=1)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    return np.divide(cov_ytyp, denom, out=np.zeros_like(denom), where=denom > 0)


def _pearson(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation; 0 for a constant row (as metrics.py)."""
    pc = p - p.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt(np.sum(pc * pc, axis=1) * np.sum(yc * yc, axis=1))
    num = np.sum(pc * yc, axis=1)
    return np.divide(num, denom, out=np.zeros_like(num), where=denom > 1e-300)


def _spearman(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson(stats.rankdata(p, axis=1), stats.rankdata(y, axis=1))


_BATCH = {
    "accuracy": _accuracy,
    "f1": _f1,
    "mcc": _mcc,
    "pearson": _pearson,
    "spearman": _spearman,
}


def _matched(
    mine: Mapping[str, Sequence], theirs: Mapping[str, Sequence], *, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variant predictions, reference predictions and labels on the guids both hold."""
    index = {g: i for i, g in enumerate(mine["guids"])}
    keep = [(index[g], j) for j, g in enumerate(theirs["guids"]) if g in index]
    if len(keep) < len(theirs["guids"]) or len(keep) < len(index):
        warnings.warn(
            f"{where}: the two variants' dev predictions share {len(keep)} of "
            f"{len(theirs['guids'])}/{len(index)} guids; bootstrapping the shared ones",
            StoreWarning,
            stacklevel=4,
        )
    i_var = [i for i, _ in keep]
    i_ref = [j for _, j in keep]
    labels, p_var, p_ref, labels_var = _numeric(
        np.asarray(theirs["labels"])[i_ref],
        np.asarray(mine["predictions"])[i_var],
        np.asarray(theirs["predictions"])[i_ref],
        np.asarray(mine["labels"])[i_var],
    )
    if not np.array_equal(labels, labels_var):
        warnings.warn(
            f"{where}: the variants' dev labels differ for the same guids; using the reference's",
            StoreWarning,
            stacklevel=4,
        )
    return p_var, p_ref, labels


def _numeric(*arrays: np.ndarray) -> list[np.ndarray]:
    """Class ids as int64, scores as float; label names (strings) encoded to shared ids."""
    if any(a.dtype.kind in "USO" for a in arrays):
        names = np.unique(np.concatenate([a.astype(str) for a in arrays]))
        return [np.searchsorted(names, a.astype(str)).astype(np.int64) for a in arrays]
    if all(a.dtype.kind in "iub" for a in arrays):
        return [a.astype(np.int64) for a in arrays]
    return [a.astype(float) for a in arrays]


def _constant(diff: np.ndarray) -> bool:
    """Equal paired differences (up to float noise): the t statistic is undefined, not huge."""
    return bool(np.ptp(diff) <= 1e-12 * max(1.0, float(np.max(np.abs(diff)))))


def _p(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _split_of(row: TaskRow) -> str:
    """The dev split whose predictions give the row's main metric (MNLI: dev_matched)."""
    if row.info is not None:
        for split in row.info.dev_splits:
            if row.main_metric in row.info.metric_keys(split):
                return split
    return "dev"
