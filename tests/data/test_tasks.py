"""The task registry: names, spellings, per-task facts, custom tasks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from addrop_cli.data import task_rows, tasks
from addrop_cli.data.config import CustomTaskSpec, DataSpec
from addrop_cli.data.metrics import METRICS
from addrop_cli.data.task_rows import ROWS_COLUMN, registry_rows
from addrop_cli.data.tasks import get_task, glue_tasks, task_names
from addrop_cli.errors import SpecError

GLUE_ORDER = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax"]


def test_registry_order_and_glue_membership():
    assert task_names() == GLUE_ORDER
    assert [t.name for t in glue_tasks()] == GLUE_ORDER[:-1]  # AX is not part of the GLUE score


@pytest.mark.parametrize(
    "spelling, name",
    [
        ("SST-2", "sst2"),
        ("sst-2", "sst2"),
        ("sst_2", "sst2"),
        ("Sst2", "sst2"),
        ("STS-B", "stsb"),
        ("stsb", "stsb"),
        ("CoLA", "cola"),
        ("MNLI", "mnli"),
        ("qqp", "qqp"),
        ("QNLI", "qnli"),
        ("rte", "rte"),
        ("WNLI", "wnli"),
        ("MRPC", "mrpc"),
        ("AX", "ax"),
        ("diagnostic", "ax"),
    ],
)
def test_get_task_accepts_common_spellings(spelling, name):
    assert get_task(spelling).name == name


@pytest.mark.parametrize(
    "typo, suggestion", [("sst3", "sst2"), ("mnlii", "mnli"), ("cloa", "cola")]
)
def test_unknown_task_is_a_spec_error_with_did_you_mean(typo, suggestion):
    with pytest.raises(SpecError) as err:
        get_task(typo)
    msg = str(err.value)
    assert "\n" not in msg
    assert "did you mean" in msg and suggestion in msg
    assert "known tasks" in msg


def test_unknown_task_without_close_match_lists_known_tasks():
    with pytest.raises(SpecError, match="known tasks: cola, sst2"):
        get_task("xyzzy")


def test_task_records_are_frozen():
    task = get_task("sst2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "name, display, n_text, num_labels, metrics, main, leaderboard",
    [
        ("cola", "CoLA", 1, 2, ("mcc",), "mcc", {"test": "CoLA.tsv"}),
        ("sst2", "SST-2", 1, 2, ("accuracy",), "accuracy", {"test": "SST-2.tsv"}),
        ("mrpc", "MRPC", 2, 2, ("f1", "accuracy"), "f1", {"test": "MRPC.tsv"}),
        ("stsb", "STS-B", 2, 1, ("pearson", "spearman"), "pearson", {"test": "STS-B.tsv"}),
        ("qqp", "QQP", 2, 2, ("f1", "accuracy"), "f1", {"test": "QQP.tsv"}),
        (
            "mnli",
            "MNLI",
            2,
            3,
            ("accuracy_m", "accuracy_mm"),
            "accuracy_m",
            {"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
        ),
        ("qnli", "QNLI", 2, 2, ("accuracy",), "accuracy", {"test": "QNLI.tsv"}),
        ("rte", "RTE", 2, 2, ("accuracy",), "accuracy", {"test": "RTE.tsv"}),
        ("wnli", "WNLI", 2, 2, ("accuracy",), "accuracy", {"test": "WNLI.tsv"}),
    ],
)
def test_glue_task_facts(name, display, n_text, num_labels, metrics, main, leaderboard):
    t = get_task(name)
    assert t.display == display
    assert len(t.text_columns) == n_text
    assert t.num_labels == num_labels
    assert t.metrics == metrics
    assert t.main_metric == main and main in t.metrics
    assert t.leaderboard_files == leaderboard
    assert tuple(t.leaderboard_files) == t.test_splits
    assert t.is_regression == (name == "stsb")
    assert len(t.file_labels) == len(t.label_names)
    assert all(m in METRICS for m in t.base_metrics)
    assert set(t.splits) == set(t.files)  # every split has a file layout
    assert set(t.splits) == set(t.hub_splits)


def test_label_names_follow_the_hub_classlabel_order():
    assert get_task("cola").label_names == ("unacceptable", "acceptable")
    assert get_task("sst2").label_names == ("negative", "positive")
    assert get_task("mrpc").label_names == ("not_equivalent", "equivalent")
    assert get_task("qqp").label_names == ("not_duplicate", "duplicate")
    assert get_task("mnli").label_names == ("entailment", "neutral", "contradiction")
    assert get_task("qnli").label_names == ("entailment", "not_entailment")
    assert get_task("rte").label_names == ("entailment", "not_entailment")
    assert get_task("wnli").label_names == ("not_entailment", "entailment")
    # raw values in GLUE files / leaderboard files
    assert get_task("wnli").file_labels == ("0", "1")
    assert get_task("mnli").file_labels == ("entailment", "neutral", "contradiction")


def test_mnli_dev_and_test_splits_and_metric_suffixes():
    t = get_task("mnli")
    assert t.dev_splits == ("dev_matched", "dev_mismatched")
    assert t.test_splits == ("test_matched", "test_mismatched")
    assert t.metric_keys("dev_matched") == ("accuracy_m",)
    assert t.metric_keys("dev_mismatched") == ("accuracy_mm",)
    assert t.metric_keys("heldout") == ("accuracy_m",)  # heldout carries the main metric key
    assert t.hub_splits["dev_mismatched"] == "validation_mismatched"
    assert t.files["dev_matched"].filename == "dev_matched.tsv"
    assert get_task("sst2").metric_keys("heldout") == ("accuracy",)
    with pytest.raises(ValueError):
        t.metric_suffix("dev")


def test_ax_is_test_only_and_scored_with_mnli():
    t = get_task("ax")
    assert t.train_split is None and t.dev_splits == () and t.test_splits == ("test",)
    assert t.eval_with == "mnli" and not t.is_glue
    assert t.folder == "diagnostic" and t.files["test"].filename == "diagnostic.tsv"
    assert t.leaderboard_files == {"test": "AX.tsv"}
    assert t.label_names == get_task("mnli").label_names


def test_cola_train_and_dev_are_header_less():
    t = get_task("cola")
    assert not t.files["train"].header and t.files["train"].ncols == 4
    assert t.files["test"].header


def _custom(**kw) -> CustomTaskSpec:
    base = {
        "train": Path("t.csv"),
        "dev": Path("d.csv"),
        "text_a": "review",
        "labels": ["neg", "pos"],
    }
    return CustomTaskSpec(**{**base, **kw})


def test_custom_task_from_data_spec():
    data = DataSpec(custom_tasks={"reviews": _custom(metrics=["f1", "accuracy"])})
    t = get_task("reviews", data)
    assert t.name == "reviews" and t.custom is not None and not t.is_glue
    assert t.text_columns == ("review",)
    assert t.label_names == ("neg", "pos") and t.num_labels == 2
    assert t.metrics == ("f1", "accuracy") and t.main_metric == "f1"
    assert t.dev_splits == ("dev",) and t.test_splits == ()
    assert get_task("Reviews", data).name == "reviews"


def test_custom_regression_task():
    spec = _custom(
        labels=None,
        regression=True,
        metrics=["spearman", "pearson"],
        text_b="b",
        main_metric="pearson",
        test=Path("x.jsonl"),
    )
    t = get_task("sim", DataSpec(custom_tasks={"sim": spec}))
    assert t.is_regression and t.num_labels == 1 and t.main_metric == "pearson"
    assert t.text_columns == ("review", "b") and t.test_splits == ("test",)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"metrics": ["pearson"]}, "not a classification metric"),
        ({"labels": None, "regression": True, "metrics": ["accuracy"]}, "not a regression metric"),
        ({"metrics": ["accuracy"], "main_metric": "f1"}, "main_metric"),
        ({"labels": ["a", "a"]}, "distinct"),
    ],
)
def test_bad_custom_task_is_a_spec_error(kw, match):
    with pytest.raises(SpecError, match=match):
        get_task("mine", DataSpec(custom_tasks={"mine": _custom(**kw)}))


def test_custom_task_may_not_shadow_a_glue_task():
    with pytest.raises(SpecError, match="clashes with the GLUE task SST-2"):
        get_task("sst2", DataSpec(custom_tasks={"sst2": _custom()}))


def test_did_you_mean_includes_custom_tasks():
    data = DataSpec(custom_tasks={"reviews": _custom()})
    with pytest.raises(SpecError, match="reviews"):
        get_task("reveiws", data)


def test_registry_table_lists_every_task_and_counts_rows(fixtures_dir):
    from rich.console import Console

    from addrop_cli.cli.listing import tasks_table

    console = Console(width=250, record=True)
    console.print(tasks_table(fixtures_dir / "glue"))
    text = console.export_text()
    for t in task_names():
        assert get_task(t).display in text
    assert "train 8, dev 4, test 3" in text  # CoLA fixture (header-less train/dev)
    assert "MNLI-mm.tsv" in text


def test_registry_rows_are_plain_text_the_data_layer_builds_no_table(fixtures_dir):
    """The data layer hands the CLI plain rows; only the CLI knows Rich."""
    rows = registry_rows(fixtures_dir / "glue")
    assert [row["task"] for row in rows] == task_names()
    assert all(isinstance(cell, str) for row in rows for cell in row.values())
    assert ROWS_COLUMN not in registry_rows()[0]  # no folder: no counts
    assert not any("from rich" in Path(m.__file__).read_text() for m in (tasks, task_rows))


def test_custom_regression_task_defaults_to_correlations():
    spec = _custom(labels=None, regression=True)
    t = get_task("sim", DataSpec(custom_tasks={"sim": spec}))
    assert t.metrics == ("pearson", "spearman") and t.main_metric == "pearson"
