"""Tests over seeds, the family correction, and metrics over many resamples at once.

On the per-seed task scores (run-to-run variance): the paired t-test and the Wilcoxon
signed-rank test on the seeds both variants finished (same seed = same data order and head
initialisation, so the pairs are real), and Welch's t-test on all finished seeds. Holm's
step-down correction (:func:`holm`) is applied over the report's whole family of comparisons
(:mod:`addrop_cli.report.comparisons`). The dev-example side of the evidence is
:mod:`addrop_cli.report.bootstrap`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from addrop_cli.data.metrics import base_metric, metric_fn

MARKERS = ((0.01, "**"), (0.05, "*"))
"""(threshold, marker) on Holm-adjusted p-values, strictest first."""

MIN_SEEDS = 3
"""Fewest seeds a test over seeds is run on. With two, a t-test has one degree of freedom (its
95% interval is +-12.7 standard errors) and the Wilcoxon test cannot reach p < 0.5: the report
says "not enough seeds for a test" rather than print a p-value that means nothing."""

NOT_ENOUGH_SEEDS = f"not enough seeds for a test (needs {MIN_SEEDS})"
NO_SPREAD = "no spread: all seeds differ by the same amount (no test over seeds)"
"""Why seeds enough for a test have none: equal paired differences (identical scores, say) leave
the paired t statistic undefined, and no p-value says more than the difference itself."""


def no_test_reason(n_paired: int) -> str:
    """Why a comparison of ``n_paired`` shared seeds has no p-value."""
    return NOT_ENOUGH_SEEDS if n_paired < MIN_SEEDS else NO_SPREAD


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


# ---------------------------------------------------------------------------------------------
# Metrics over many resamples at once (rows of a 2-D array); same definitions as metrics.py
# ---------------------------------------------------------------------------------------------


def batch_metric(
    metric_key: str, num_labels: int = 2
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function scoring each row of (resamples x examples) arrays with ``metric_key`` as a task
    of ``num_labels`` labels defines it (:func:`addrop_cli.data.metrics.metric_fn`).

    The common GLUE metrics are vectorised here; any other metric of
    :data:`addrop_cli.data.metrics.METRICS` is applied row by row.
    """
    name = base_metric(metric_key)
    if name == "f1":
        return lambda p, y: _f1(p, y, num_labels)
    if name in _BATCH:
        return _BATCH[name]
    fn = metric_fn(name, num_labels)
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


def _f1(p: np.ndarray, y: np.ndarray, num_labels: int = 2) -> np.ndarray:
    """Per row, as metrics.py: with two labels the F1 of class 1, with more the macro F1 over
    the task's labels (0 for a label neither present nor predicted), whatever the rows hold."""
    c = _confusion(p, y)
    tp = np.diagonal(c, axis1=1, axis2=2)
    fp, fn = c.sum(axis=1) - tp, c.sum(axis=2) - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    f1 = np.pad(f1, ((0, 0), (0, max(0, max(num_labels, 2) - f1.shape[1]))))
    return f1[:, 1] if num_labels <= 2 else f1[:, :num_labels].mean(axis=1)


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
    "mcc": _mcc,
    "pearson": _pearson,
    "spearman": _spearman,
}


def _constant(diff: np.ndarray) -> bool:
    """Equal paired differences (up to float noise): the t statistic is undefined, not huge."""
    return bool(np.ptp(diff) <= 1e-12 * max(1.0, float(np.max(np.abs(diff)))))


def _p(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
