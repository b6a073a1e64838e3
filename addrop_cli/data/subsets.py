"""Low-resource subsets: the seeded, stratified held-out carve-out and ``train_size``."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from addrop_cli.data.examples import (
    _REGRESSION_STRATA,
    _STREAM_HELDOUT,
    _STREAM_TRAIN_SIZE,
    Example,
)
from addrop_cli.errors import DataError

if TYPE_CHECKING:
    from addrop_cli.data.config import DataSpec

log = logging.getLogger(__name__)


# Subsets: held-out carve-out and train_size
# ---------------------------------------------------------------------------------------------


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed % 2**63, stream])


def _strata(examples: Sequence[Example], regression: bool) -> list[list[int]]:
    """Index groups to stratify over: by label, or by score decile for regression."""
    if regression:
        values = np.array([float(e.label) for e in examples])  # type: ignore[arg-type]
        order = np.argsort(values, kind="stable")
        k = min(_REGRESSION_STRATA, len(examples))
        return [sorted(chunk.tolist()) for chunk in np.array_split(order, k) if len(chunk)]
    groups: dict[Any, list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(e.label, []).append(i)
    return [groups[k] for k in sorted(groups, key=lambda x: (x is None, x))]


def _allocate(sizes: Sequence[int], n: int) -> list[int]:
    """Split ``n`` over groups proportionally (largest remainder), each group >= 1 when n allows."""
    total = sum(sizes)
    quotas = [n * s / total for s in sizes]
    alloc = [math.floor(q) for q in quotas]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - alloc[i]), i))
    for i in order[: n - sum(alloc)]:
        alloc[i] += 1
    if n >= len(sizes):
        for i in range(len(sizes)):
            if alloc[i] == 0:
                donor = max(range(len(sizes)), key=lambda j: (alloc[j], -j))
                alloc[donor] -= 1
                alloc[i] += 1
    return alloc


def stratified_sample(
    examples: Sequence[Example], n: int, rng: np.random.Generator, *, regression: bool
) -> list[int]:
    """Sorted indices of ``n`` examples drawn without replacement, stratified by label."""
    if n >= len(examples):
        return list(range(len(examples)))
    groups = _strata(examples, regression)
    picked: list[int] = []
    for group, k in zip(groups, _allocate([len(g) for g in groups], n), strict=True):
        perm = rng.permutation(len(group))[:k]
        picked.extend(group[i] for i in perm)
    return sorted(picked)


def nested_sample(
    examples: Sequence[Example], n: int, rng: np.random.Generator, *, regression: bool
) -> list[int]:
    """Sorted indices of the first ``n`` of :func:`stratified_order`: a stratified sample whose
    smaller sizes (same ``rng`` seed) are subsets of its larger ones."""
    if n >= len(examples):
        return list(range(len(examples)))
    return sorted(stratified_order(examples, rng, regression=regression)[:n])


def stratified_order(
    examples: Sequence[Example], rng: np.random.Generator, *, regression: bool
) -> list[int]:
    """Every index in one seeded order whose every prefix is stratified: each group's examples
    in a seeded permutation; first one per group, then the rest by the Sainte-Laguë priority
    (j + 1/2) / group size, ties to the earlier group. A divisor method never takes an example
    back as n grows, so the sample of n is inside the sample of m > n; for two groups its counts
    equal the largest-remainder split of :func:`stratified_sample`."""
    groups = _strata(examples, regression)
    keyed = []
    for g, group in enumerate(groups):
        for j, i in enumerate(rng.permutation(len(group))):
            # exact fractions: a float tie could break differently from the remainder rule
            priority = Fraction(-1) if j == 0 else Fraction(2 * j + 1, 2 * len(group))
            keyed.append((priority, g, j, group[i]))
    return [index for *_, index in sorted(keyed)]


def _size(value: float, total: int) -> int:
    """A count (>= 1) or a fraction (< 1) of ``total`` as a number of examples (at least 1)."""
    return int(value) if value >= 1 else max(1, round(value * total))


def split_train(
    train: Sequence[Example], data: DataSpec, seed: int, *, regression: bool, task_name: str = ""
) -> tuple[list[int], list[int] | None]:
    """Indices of (the training subset, the held-out subset or None) within ``train``."""
    remaining = list(range(len(train)))
    heldout: list[int] | None = None
    if data.heldout is not None:
        h = _size(data.heldout, len(train))
        if h >= len(train):
            raise DataError(
                f"data.heldout: {h} held-out examples leave none of the {len(train)} "
                f"{task_name} training examples; use a smaller count or fraction"
            )
        heldout = stratified_sample(train, h, _rng(seed, _STREAM_HELDOUT), regression=regression)
        taken = set(heldout)
        remaining = [i for i in remaining if i not in taken]
    if data.train_size is not None:
        n = _size(data.train_size, len(remaining))
        if n > len(remaining):
            log.warning(
                "%s: train_size %d is more than the %d training examples; using all of them",
                task_name,
                n,
                len(remaining),
            )
        pool = [train[i] for i in remaining]
        # nested: the train_size 1,000 of a seed holds its 500, so a curve compares like with like
        sub = nested_sample(pool, n, _rng(seed, _STREAM_TRAIN_SIZE), regression=regression)
        remaining = [remaining[i] for i in sub]
    return remaining, heldout


# ---------------------------------------------------------------------------------------------
