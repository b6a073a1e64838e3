"""A metric's definition depends on the task, never on the predictions (issue 36): `f1` on a
task with three labels is the macro F1 over its labels whatever classes the predictions hold,
in training (compute_metrics), in the report's bootstrap (batch_metric) and in both alike."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from addrop_cli.data.config import CustomTaskSpec, DataSpec
from addrop_cli.data.metrics import compute_metrics
from addrop_cli.data.tasks import get_task


def _task(labels: list[str]):  # type: ignore[no-untyped-def]
    spec = CustomTaskSpec(
        train="t.csv", dev="d.csv", text_a="x", labels=labels, metrics=["f1", "accuracy"]
    )
    return get_task("mine", DataSpec(custom_tasks={"mine": spec}))


def _macro(p: np.ndarray, y: np.ndarray, k: int) -> float:
    return float(f1_score(y, p, labels=list(range(k)), average="macro", zero_division=0.0))


LABELS = np.array([0, 1, 2, 2, 1, 0, 2, 1])
ONLY_0_1 = np.array([0, 1, 1, 0, 1, 0, 1, 1])  # no prediction of label 2
WITH_2 = ONLY_0_1.copy()
WITH_2[2] = 2  # one prediction of label 2


@pytest.mark.parametrize(
    "labels", [LABELS, LABELS % 2], ids=["dev-has-all-labels", "dev-lacks-label-2"]
)
@pytest.mark.parametrize("preds", [ONLY_0_1, WITH_2], ids=["predicts-0-1", "predicts-2-once"])
def test_f1_of_a_three_label_task_is_macro_whatever_the_predictions(
    preds: np.ndarray, labels: np.ndarray
) -> None:
    task = _task(["a", "b", "c"])
    out = compute_metrics(task, {"dev": (preds, labels)})
    assert out["f1"] == pytest.approx(_macro(preds, labels, 3))
    binary = f1_score(labels == 1, preds == 1)
    assert out["f1"] != pytest.approx(binary)  # not the F1 of label 1 alone


def test_f1_of_a_two_label_task_is_the_f1_of_label_1() -> None:
    task = _task(["neg", "pos"])
    y, p = np.array([1, 0, 0, 1, 1]), np.array([1, 1, 0, 1, 0])
    assert compute_metrics(task, {"dev": (p, y)})["f1"] == pytest.approx(2 / 3)
    assert compute_metrics(task, {"dev": (np.zeros(5, int), y)})["f1"] == 0.0


def test_the_bootstrap_scores_f1_as_training_did() -> None:
    from addrop_cli.data.metrics import metric_fn
    from addrop_cli.report.stats import batch_metric

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=(8, 30))
    p = np.where(rng.random((8, 30)) < 0.6, y, rng.integers(0, 3, size=(8, 30)))
    p[1] %= 2  # rows whose predictions fall in two classes
    y[2], p[2] = y[2] % 2, p[2] % 2  # a row where labels and predictions do
    p[3] = 0  # one predicted class only
    for k in (2, 3):
        got = batch_metric("f1", k)(p if k == 3 else p % 2, y if k == 3 else y % 2)
        want = [
            metric_fn("f1", k)(row_p, row_y)
            for row_p, row_y in zip(p if k == 3 else p % 2, y if k == 3 else y % 2, strict=True)
        ]
        assert got == pytest.approx(want, abs=1e-12)
    macro = batch_metric("f1", 3)(p, y)
    assert macro[1] == pytest.approx(_macro(p[1], y[1], 3))
    assert macro[2] == pytest.approx(_macro(p[2], y[2], 3))
