"""GLUE metrics, computed with scikit-learn and scipy exactly as GLUE defines them.

* CoLA: Matthews correlation (``mcc``).
* SST-2, QNLI, RTE, WNLI: ``accuracy``.
* MRPC, QQP: ``f1`` (of the positive class, label id 1) and ``accuracy``.
* A custom task's ``f1``: of label 1 with two labels, the macro F1 over its labels with more;
  decided by the task's label count, never by which classes the predictions hold.
* STS-B: ``pearson`` and ``spearman`` correlation.
* MNLI: ``accuracy`` on matched and mismatched dev, flat keys ``accuracy_m`` / ``accuracy_mm``.

Metric values are fractions (accuracy 0.91, not 91.0); reports may scale them. A correlation of a
constant vector is undefined; it is reported as 0.0 (no measurable correlation), as scikit-learn
does for the Matthews correlation, so that early stopping never compares NaNs.

The GLUE score follows the official leaderboard rule: average the metrics within each task (MRPC:
F1 and accuracy; STS-B: Pearson and Spearman; QQP: F1 and accuracy; MNLI: matched and mismatched
accuracy, so MNLI counts once), then take the unweighted mean over tasks. AX and custom tasks are
not part of it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from addrop_cli.data.tasks import TaskInfo, glue_tasks


def _as_class_ids(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).reshape(-1).astype(np.int64)


def _as_floats(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(-1)


def _accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    return float(accuracy_score(_as_class_ids(labels), _as_class_ids(preds)))


def _f1(preds: np.ndarray, labels: np.ndarray, num_labels: int = 2) -> float:
    """F1 as the task defines it, whatever the predictions hold: with two labels, the F1 of the
    positive class (label id 1, as GLUE scores MRPC and QQP); with more, the macro F1 over every
    label of the task (a label neither in the split nor predicted counts 0)."""
    y, p = _as_class_ids(labels), _as_class_ids(preds)
    which = [1] if num_labels <= 2 else list(range(num_labels))
    return float(f1_score(y, p, labels=which, average="macro", zero_division=0.0))


def metric_fn(name: str, num_labels: int = 2) -> Callable[[np.ndarray, np.ndarray], float]:
    """``fn(predictions, labels)`` of metric ``name`` on a task with ``num_labels`` labels: the
    task decides the definition (``f1``: binary for two labels, macro for more), never the
    predictions."""
    if name == "f1":
        return lambda preds, labels: _f1(preds, labels, num_labels)
    return METRICS[name].fn


def _mcc(preds: np.ndarray, labels: np.ndarray) -> float:
    return float(matthews_corrcoef(_as_class_ids(labels), _as_class_ids(preds)))


def _constant(*arrays: np.ndarray) -> bool:
    return any(a.size < 2 or np.all(a == a[0]) for a in arrays)


def _pearson(preds: np.ndarray, labels: np.ndarray) -> float:
    p, y = _as_floats(preds), _as_floats(labels)
    if _constant(p, y):
        return 0.0
    return float(stats.pearsonr(p, y)[0])


def _spearman(preds: np.ndarray, labels: np.ndarray) -> float:
    p, y = _as_floats(preds), _as_floats(labels)
    if _constant(p, y):
        return 0.0
    return float(stats.spearmanr(p, y)[0])


def _mse(preds: np.ndarray, labels: np.ndarray) -> float:
    p, y = _as_floats(preds), _as_floats(labels)
    return float(np.mean((p - y) ** 2))


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    fn: Callable[[np.ndarray, np.ndarray], float]
    """``fn(predictions, labels)``: class ids, or floats for regression metrics (``f1`` here is
    the two-label one; :func:`metric_fn` gives a task's own)."""
    bounds: tuple[float, float] = (0.0, 1.0)
    """The values the metric can take: an interval over seeds is clipped to them."""


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("mcc", True, _mcc, (-1.0, 1.0)),
        Metric("accuracy", True, _accuracy),
        Metric("f1", True, _f1),
        Metric("pearson", True, _pearson, (-1.0, 1.0)),
        Metric("spearman", True, _spearman, (-1.0, 1.0)),
        Metric("mse", False, _mse, (0.0, math.inf)),
    )
}


def score_bounds(metric_keys: Sequence[str]) -> tuple[float, float]:
    """The values a mean of these metrics can take (unknown metrics: unbounded)."""
    bounds = [METRICS[base_metric(k)].bounds if base_metric(k) in METRICS else (-math.inf, math.inf)
              for k in metric_keys]  # fmt: skip
    if not bounds:
        return -math.inf, math.inf
    return sum(b[0] for b in bounds) / len(bounds), sum(b[1] for b in bounds) / len(bounds)


_LOWER_IS_BETTER_EXTRA = ("loss", "eval_loss", "train_loss")

GLUE_SCORE_FORMULA = (
    "GLUE score = unweighted mean over tasks of each task's mean metric "
    "(MRPC/QQP: F1 & acc; STS-B: Pearson & Spearman; MNLI: m & mm acc; CoLA: MCC; others: acc)"
)


def base_metric(metric_key: str) -> str:
    """``"accuracy_mm"`` -> ``"accuracy"``: the metric name without its dev-split suffix."""
    if metric_key in METRICS:
        return metric_key
    for sfx in ("_mm", "_m"):
        if metric_key.endswith(sfx) and metric_key[: -len(sfx)] in METRICS:
            return metric_key[: -len(sfx)]
    head = metric_key.rsplit("_", 1)[0]
    if head in METRICS:
        return head
    raise KeyError(f"unknown metric {metric_key!r}; known: {', '.join(METRICS)}")


def higher_is_better(metric_key: str) -> bool:
    """Direction of a metric key, suffixed (``accuracy_m``) or not; losses are lower-is-better."""
    if metric_key in _LOWER_IS_BETTER_EXTRA or metric_key.endswith("loss"):
        return False
    return METRICS[base_metric(metric_key)].higher_is_better


def compute_metrics(
    task: TaskInfo, split_outputs: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    """The task's flat metric dict from ``dev split -> (predictions, labels)``.

    Predictions are class ids (argmax already taken) or floats for regression. Splits may be any of
    the task's dev splits, or ``heldout`` (see :mod:`addrop_cli.data.tasks` for the key rule).
    For MNLI    with both dev splits this returns ``{"accuracy_m": ..., "accuracy_mm": ...}``.
    """
    out: dict[str, float] = {}
    for split, (preds, labels) in split_outputs.items():
        preds, labels = np.asarray(preds), np.asarray(labels)
        if preds.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{task.display} {split}: {preds.shape[0]} predictions for {labels.shape[0]} labels"
            )
        if labels.shape[0] == 0:
            raise ValueError(f"{task.display} {split}: no examples to score")
        sfx = task.metric_suffix(split)
        for m in task.base_metrics:
            out[m + sfx] = metric_fn(m, task.num_labels)(preds, labels)
    return out


def task_score(task: TaskInfo, metrics: Mapping[str, float]) -> float:
    """The GLUE per-task score: the mean of the task's metrics (all of ``task.metrics``)."""
    missing = [k for k in task.metrics if k not in metrics]
    if missing or not task.metrics:
        raise KeyError(f"{task.display}: metrics {missing or '(none)'} missing for its score")
    return float(np.mean([metrics[k] for k in task.metrics]))


@dataclass(frozen=True)
class GlueScore:
    score: float | None
    """Mean over ``covered`` tasks; None when no GLUE task is covered."""
    covered: tuple[str, ...]
    """GLUE tasks (canonical names, registry order) that had all their metrics."""
    missing: tuple[str, ...]
    """GLUE tasks absent from the input, or lacking one of their metrics."""

    @property
    def complete(self) -> bool:
        return not self.missing


def glue_score(per_task: Mapping[str, Mapping[str, float]]) -> GlueScore:
    """The GLUE score over the tasks present; keys are canonical task names.

    AX and custom tasks are ignored. A task whose metric dict lacks one of its metrics (e.g. MNLI
    without ``accuracy_mm``), or holds a NaN, counts as missing rather than being half-scored.
    """
    scores: list[float] = []
    covered: list[str] = []
    missing: list[str] = []
    for task in glue_tasks():
        m = per_task.get(task.name)
        if m is None or any(k not in m or not math.isfinite(m[k]) for k in task.metrics):
            missing.append(task.name)
            continue
        covered.append(task.name)
        scores.append(task_score(task, m))
    score = float(np.mean(scores)) if scores else None
    return GlueScore(score=score, covered=tuple(covered), missing=tuple(missing))


__all__ = [
    "GLUE_SCORE_FORMULA",
    "METRICS",
    "GlueScore",
    "Metric",
    "base_metric",
    "compute_metrics",
    "glue_score",
    "higher_is_better",
    "task_score",
]


@dataclass(frozen=True)
class Summary:
    """A centre (mean or median) and the sample standard deviation of values over seeds."""

    center: float | None
    std: float | None
    """Sample standard deviation (ddof 1); None with fewer than two values."""
    n: int


Agg = Literal["mean", "median"]


def summarize(values: Sequence[float], agg: Agg = "mean") -> Summary:
    """Centre and sample standard deviation of ``values`` (None where undefined)."""
    if not values:
        return Summary(None, None, 0)
    center = statistics.fmean(values) if agg == "mean" else statistics.median(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return Summary(float(center), None if std is None else float(std), len(values))
