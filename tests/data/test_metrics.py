"""GLUE metrics against values worked out by hand, and the GLUE score rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from addrop_cli.data.config import CustomTaskSpec, DataSpec
from addrop_cli.data.metrics import (
    GLUE_SCORE_FORMULA,
    METRICS,
    base_metric,
    compute_metrics,
    glue_score,
    higher_is_better,
    task_score,
)
from addrop_cli.data.tasks import get_task


def a(*xs):
    return np.array(xs)


def test_accuracy_by_hand():
    # 3 of 4 right
    assert METRICS["accuracy"].fn(a(1, 0, 1, 1), a(1, 0, 0, 1)) == pytest.approx(0.75)


def test_f1_of_the_positive_class_by_hand():
    # TP=2 (0,3), FP=1 (1), FN=1 (4): precision 2/3, recall 2/3, F1 2/3
    assert METRICS["f1"].fn(a(1, 1, 0, 1, 0), a(1, 0, 0, 1, 1)) == pytest.approx(2 / 3)
    # nothing predicted positive: F1 0 (not NaN)
    assert METRICS["f1"].fn(a(0, 0, 0), a(1, 0, 1)) == 0.0


def test_mcc_by_hand():
    # TP=2, FP=1, TN=2, FN=1: (2*2 - 1*1) / sqrt(3*3*3*3) = 3/9
    assert METRICS["mcc"].fn(a(1, 1, 0, 0, 1, 0), a(1, 0, 0, 0, 1, 1)) == pytest.approx(1 / 3)
    # a constant classifier has MCC 0
    assert METRICS["mcc"].fn(a(1, 1, 1, 1), a(1, 0, 1, 0)) == 0.0


def test_pearson_by_hand():
    # deviations p: -1.5 -.5 .5 1.5 ; y: -3.25 -1.25 .75 3.75
    # cov sum 11.5, var sums 5 and 26.75
    got = METRICS["pearson"].fn(a(1.0, 2.0, 3.0, 4.0), a(2.0, 4.0, 6.0, 9.0))
    assert got == pytest.approx(11.5 / math.sqrt(5 * 26.75))


def test_spearman_by_hand():
    # ranks 1 2 3 4 vs 1 3 2 4: sum d^2 = 2, rho = 1 - 6*2 / (4*(16-1)) = 0.8
    assert METRICS["spearman"].fn(a(0.1, 0.2, 0.3, 0.4), a(1.0, 3.0, 2.0, 4.0)) == pytest.approx(
        0.8
    )


def test_correlation_of_a_constant_is_zero_not_nan():
    assert METRICS["pearson"].fn(a(2.0, 2.0, 2.0), a(1.0, 2.0, 3.0)) == 0.0
    assert METRICS["spearman"].fn(a(1.0, 2.0, 3.0), a(4.0, 4.0, 4.0)) == 0.0


def test_mse_by_hand():
    assert METRICS["mse"].fn(a(1.0, 2.0), a(2.0, 4.0)) == pytest.approx((1 + 4) / 2)


def test_directions():
    for name in ("mcc", "accuracy", "f1", "pearson", "spearman"):
        assert METRICS[name].higher_is_better
        assert higher_is_better(name)
    assert higher_is_better("accuracy_m") and higher_is_better("accuracy_mm")
    assert not higher_is_better("mse")
    assert not higher_is_better("loss") and not higher_is_better("eval_loss")
    with pytest.raises(KeyError):
        higher_is_better("bleu")


def test_base_metric_strips_split_suffixes():
    assert base_metric("accuracy_mm") == "accuracy"
    assert base_metric("accuracy_m") == "accuracy"
    assert base_metric("f1") == "f1"


def test_compute_metrics_mrpc():
    out = compute_metrics(get_task("mrpc"), {"dev": (a(1, 1, 0, 1, 0), a(1, 0, 0, 1, 1))})
    assert out == pytest.approx({"f1": 2 / 3, "accuracy": 0.6})
    assert list(out) == ["f1", "accuracy"]


def test_compute_metrics_mnli_uses_split_suffixes():
    out = compute_metrics(
        get_task("mnli"),
        {"dev_matched": (a(0, 1, 2, 2), a(0, 1, 2, 0)), "dev_mismatched": (a(0, 0), a(1, 0))},
    )
    assert out == pytest.approx({"accuracy_m": 0.75, "accuracy_mm": 0.5})


def test_compute_metrics_on_the_heldout_split_gives_the_main_metric_key():
    mnli = get_task("mnli")
    out = compute_metrics(mnli, {"heldout": (a(0, 1), a(0, 2))})
    assert out == pytest.approx({"accuracy_m": 0.5})
    assert mnli.main_metric in out


def test_compute_metrics_stsb_and_cola():
    stsb = compute_metrics(
        get_task("stsb"), {"dev": (a(0.1, 0.2, 0.3, 0.4), a(1.0, 3.0, 2.0, 4.0))}
    )
    assert stsb["spearman"] == pytest.approx(0.8)
    assert set(stsb) == {"pearson", "spearman"}
    cola = compute_metrics(get_task("cola"), {"dev": (a(1, 1, 0, 0, 1, 0), a(1, 0, 0, 0, 1, 1))})
    assert cola == pytest.approx({"mcc": 1 / 3})


def test_compute_metrics_rejects_mismatched_lengths_and_unknown_splits():
    with pytest.raises(ValueError, match="predictions"):
        compute_metrics(get_task("sst2"), {"dev": (a(1, 0), a(1))})
    with pytest.raises(ValueError):
        compute_metrics(get_task("sst2"), {"dev_matched": (a(1), a(1))})


def test_compute_metrics_custom_task():
    spec = CustomTaskSpec(
        train="t.csv", dev="d.csv", text_a="x", labels=["a", "b", "c"], metrics=["accuracy", "f1"]
    )
    t = get_task("three", DataSpec(custom_tasks={"three": spec}))
    out = compute_metrics(t, {"dev": (a(0, 1, 2, 2), a(0, 1, 2, 1))})
    # macro F1 over 3 classes: class0 1, class1 P=1 R=.5 -> 2/3, class2 P=.5 R=1 -> 2/3
    assert out == pytest.approx({"accuracy": 0.75, "f1": (1 + 2 / 3 + 2 / 3) / 3})


def test_task_score_is_the_mean_of_the_task_metrics():
    assert task_score(get_task("mrpc"), {"f1": 0.8, "accuracy": 0.7}) == pytest.approx(0.75)
    assert task_score(get_task("mnli"), {"accuracy_m": 0.8, "accuracy_mm": 0.6}) == pytest.approx(
        0.7
    )
    with pytest.raises(KeyError):
        task_score(get_task("mnli"), {"accuracy_m": 0.8})


FULL = {
    "cola": {"mcc": 0.5},
    "sst2": {"accuracy": 0.9},
    "mrpc": {"f1": 0.8, "accuracy": 0.7},  # 0.75
    "stsb": {"pearson": 0.8, "spearman": 0.9},  # 0.85
    "qqp": {"f1": 0.7, "accuracy": 0.9},  # 0.8
    "mnli": {"accuracy_m": 0.8, "accuracy_mm": 0.6},  # 0.7, counted once
    "qnli": {"accuracy": 0.9},
    "rte": {"accuracy": 0.6},
    "wnli": {"accuracy": 0.5},
}


def test_glue_score_official_rule_by_hand():
    # (0.5 + 0.9 + 0.75 + 0.85 + 0.8 + 0.7 + 0.9 + 0.6 + 0.5) / 9 = 6.5 / 9
    s = glue_score(FULL)
    assert s.score == pytest.approx(6.5 / 9)
    assert s.covered == ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
    assert s.missing == () and s.complete


def test_glue_score_ignores_ax_and_custom_tasks():
    s = glue_score({**FULL, "ax": {"accuracy": 0.0}, "reviews": {"accuracy": 0.0}})
    assert s.score == pytest.approx(6.5 / 9)


def test_glue_score_partial_says_what_it_covered():
    s = glue_score({"sst2": {"accuracy": 0.9}, "mrpc": {"f1": 0.8, "accuracy": 0.7}})
    assert s.score == pytest.approx((0.9 + 0.75) / 2)
    assert s.covered == ("sst2", "mrpc")
    assert "cola" in s.missing and "mnli" in s.missing and not s.complete


def test_glue_score_task_missing_a_metric_counts_as_missing():
    s = glue_score({"mnli": {"accuracy_m": 0.8}, "rte": {"accuracy": 0.6}})
    assert s.covered == ("rte",) and "mnli" in s.missing
    assert s.score == pytest.approx(0.6)
    s = glue_score({"rte": {"accuracy": float("nan")}})
    assert s.score is None and s.covered == ()


def test_glue_score_of_nothing_is_none():
    s = glue_score({})
    assert s.score is None and s.covered == () and len(s.missing) == 9


def test_formula_is_one_line():
    assert "\n" not in GLUE_SCORE_FORMULA and "MNLI" in GLUE_SCORE_FORMULA
