"""What a comparison over seeds can and cannot show: Almost Stochastic Order and power.

* **ASO** (Dror, Shlomov and Reichart, 2019, *Deep Dominance*, ACL), the test NLP papers use for
  deep models' score distributions over seeds, from the authors' successors' package `deepsig`
  (Ulmer, Hardmeier and Frellsen, 2022): ``eps_min``, an upper bound on how far the variant's
  score distribution violates stochastic dominance over the reference's. Below
  :data:`ASO_THRESHOLD` (0.2, the threshold the package's documentation recommends) the variant
  is called almost stochastically dominant; 0.5 means no order either way. The confidence level
  is Bonferroni-corrected over the report's family of comparisons (the package's
  ``num_comparisons``).
* **Power** of the paired t-test at the level the correction leaves each comparison (the
  family's level divided by its size: Holm's strictest step), from the observed spread of the
  paired differences: the smallest true difference the finished seeds detect with 80% power,
  and the seeds needed to detect the observed difference with 80% power (noncentral t).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

ASO_THRESHOLD = 0.2
"""eps_min below this: the variant is almost stochastically dominant (deepsig's documentation,
after Ulmer et al., 2022, who found 0.2 to trade type I and type II errors best)."""

ASO_ITERATIONS = 1000
"""deepsig's default bootstrap iterations for eps_min."""

ASO_CONFIDENCE = 0.95

POWER = 0.8

MAX_SEEDS = 1000
"""Seeds-needed searches stop here ("> 1000")."""


@dataclass(frozen=True)
class Power:
    """What the paired seeds could detect, at one comparison's corrected level."""

    alpha: float
    """The per-comparison level: the family's level over its size."""
    detectable: float | None
    """The smallest true paired difference detected with :data:`POWER` at these seeds and this
    spread (same units as the scores); None without two seeds and some spread."""
    seeds_needed: int | None
    """Seeds for :data:`POWER` at the observed difference; None when it is zero or unknown,
    ``MAX_SEEDS + 1`` when more than :data:`MAX_SEEDS` would be needed."""


def power_of(
    variant: Mapping[int, float], reference: Mapping[int, float], *, alpha: float
) -> Power | None:
    """Power figures of the paired t-test on the seeds both cells finished."""
    shared = sorted(variant.keys() & reference.keys())
    diffs = np.array([variant[s] - reference[s] for s in shared], dtype=float)
    if len(diffs) < 2:
        return None
    sd = float(np.std(diffs, ddof=1))
    if not sd > 0:
        return Power(alpha, None, None)
    k = len(diffs)
    detectable = sd * _effect_for_power(k, alpha)
    mean = abs(float(diffs.mean()))
    needed = seeds_needed(mean / sd, alpha) if mean > 0 else None
    return Power(alpha, detectable, needed)


def paired_power(effect: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs at standardised ``effect``."""
    if n < 2:
        return 0.0
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(n)
    power = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if math.isnan(power):  # scipy's noncentral t gives up far in the tail
        return 1.0 if nc > crit else 0.0
    return power


def seeds_needed(effect: float, alpha: float) -> int:
    """The fewest pairs with :data:`POWER` at standardised ``effect`` (``MAX_SEEDS + 1`` when
    more than :data:`MAX_SEEDS`)."""
    if paired_power(effect, MAX_SEEDS, alpha) < POWER:
        return MAX_SEEDS + 1
    low, high = 2, MAX_SEEDS  # power grows with n: bisect on the first n that reaches it
    while low < high:
        mid = (low + high) // 2
        if paired_power(effect, mid, alpha) >= POWER:
            high = mid
        else:
            low = mid + 1
    return low


def _effect_for_power(n: int, alpha: float) -> float:
    """The standardised effect the paired t-test detects with :data:`POWER` at ``n`` pairs."""
    high = 1.0
    while paired_power(high, n, alpha) < POWER:  # power grows with the effect: bracket it
        high *= 2
    return float(optimize.brentq(lambda d: paired_power(d, n, alpha) - POWER, 1e-9, high))


def aso_eps_min(
    variant: Sequence[float],
    reference: Sequence[float],
    *,
    comparisons: int,
    seed: int = 0,
    iterations: int = ASO_ITERATIONS,
) -> float | None:
    """deepsig's ASO ``eps_min`` of the variant's scores over the reference's (lower: the variant
    dominates more); None with fewer than two scores a side or no spread at all."""
    if min(len(variant), len(reference)) < 2 or np.ptp([*variant, *reference]) == 0:
        return None
    from deepsig import aso  # imported here: it pulls in a progress bar and joblib

    with warnings.catch_warnings():
        # deepsig warns on a zero violation ratio's division and on its own deprecations
        warnings.simplefilter("ignore")
        eps = aso(
            list(map(float, variant)),
            list(map(float, reference)),
            confidence_level=ASO_CONFIDENCE,
            num_comparisons=max(1, comparisons),
            num_bootstrap_iterations=iterations,
            seed=seed,
            show_progress=False,
        )
    return float(eps)
