"""The task registry: the nine GLUE tasks, the diagnostic set AX, and the user's custom tasks.

Every fact about a task is data in one frozen :class:`TaskInfo` record (text fields, label names
and order, file layout per split, Hub layout, metrics, leaderboard file names); no other module
branches on a task's name.

Split names
    ``train``; ``dev`` (or ``dev_matched`` / ``dev_mismatched`` for MNLI); ``test`` (or
    ``test_matched`` / ``test_mismatched``); plus ``heldout``, a selection split carved from
    train by :mod:`addrop_cli.data` when ``data.heldout`` is set. AX has only ``test``: it is
    scored with a model fine-tuned on MNLI (``TaskInfo.eval_with``).

Labels
    ``label_names`` follows the Hugging Face ``nyu-mll/glue`` ClassLabel order, so label id ``i``
    means the same class whichever source the data came from. ``file_labels`` gives, per label id,
    the raw value in the GLUE ``.tsv`` files (e.g. CoLA ``"0"``/``"1"``, MNLI ``"entailment"``);
    it is also the value written to leaderboard files.

Metric keys (the general rule)
    A task lists its metric names in ``base_metrics`` (``mcc``, ``accuracy``, ``f1``, ``pearson``,
    ``spearman``). The flat metric dict of a run uses ``<metric><suffix>``, where the suffix is that
    of the dev split the metric was computed on: ``""`` for a task with a single dev split, and the
    split's entry in ``dev_suffixes`` for a task with several (MNLI: ``_m`` for ``dev_matched``,
    ``_mm`` for ``dev_mismatched``). ``metrics`` lists the flat keys in report order, and
    ``main_metric`` (used for early stopping and selection) is one of them. The ``heldout`` split,
    carved from train, takes the suffix of the first dev split (MNLI's training genres are the
    matched ones), so ``main_metric`` is the same key whichever selection split is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from addrop_cli.errors import SpecError
from addrop_cli.registry import did_you_mean

if TYPE_CHECKING:
    from addrop_cli.data.config import CustomTaskSpec, DataSpec

CLASSIFICATION_METRICS = ("accuracy", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman", "mse")


@dataclass(frozen=True)
class SplitFile:
    """How one split is laid out in the official GLUE folder.

    ``columns`` name the fields a row must have when the file has a header; for a header-less file
    (CoLA train/dev) ``text`` and ``label`` are column positions and ``ncols`` the field count.
    """

    filename: str
    """Relative to the task's folder, e.g. ``"train.tsv"`` or ``"dev_matched.tsv"``."""
    text: tuple[str | int, ...]
    """Column (name, or position when header-less) of each text field, in ``text_columns`` order."""
    label: str | int | None = None
    """Label column; None for unlabelled (test) files."""
    header: bool = True
    ncols: int | None = None
    """Fields per row for a header-less file (a file with a header must match the header)."""


@dataclass(frozen=True)
class TaskInfo:
    """One task: everything the data, training, metric and report code needs to know about it."""

    name: str
    """Canonical lower-case id: ``"cola"``, ``"sst2"``, ..., ``"ax"``, or a custom task's name."""
    display: str
    """Leaderboard / report name: ``"CoLA"``, ``"SST-2"``, ..."""
    text_columns: tuple[str, ...]
    """Canonical text field names (the Hub's column names for GLUE), 1 or 2."""
    label_names: tuple[str, ...]
    """Class names in label-id order; () for regression."""
    is_regression: bool
    metrics: tuple[str, ...]
    """Flat metric keys this task reports, in report order (see the module docstring)."""
    main_metric: str
    """The flat metric key used for early stopping and model selection."""
    dev_splits: tuple[str, ...]
    test_splits: tuple[str, ...]
    leaderboard_files: dict[str, str]
    """Test split -> GLUE submission file name (``"SST-2.tsv"``, ``"MNLI-m.tsv"``, ...)."""
    base_metrics: tuple[str, ...] = ()
    """Metric names without split suffix (``("accuracy",)`` for MNLI)."""
    dev_suffixes: dict[str, str] = field(default_factory=dict)
    """Dev split -> metric-key suffix; ``{"dev": ""}`` for a single dev split."""
    train_split: str | None = "train"
    """None for AX, which has no training data."""
    eval_with: str | None = None
    """For AX: the task whose fine-tuned model makes its predictions (``"mnli"``)."""
    folder: str | None = None
    """Folder inside the GLUE directory (``"SST-2"``, ``"diagnostic"`` for AX); None for custom."""
    files: dict[str, SplitFile] = field(default_factory=dict)
    """Split -> layout of its file in the GLUE folder."""
    file_labels: tuple[str, ...] = ()
    """Raw label value per label id in the GLUE files and leaderboard files."""
    hub_config: str | None = None
    """Config name of the Hub dataset ``nyu-mll/glue``; None for custom tasks."""
    hub_splits: dict[str, str] = field(default_factory=dict)
    """Split -> Hub split name (``"dev"`` -> ``"validation"``)."""
    is_glue: bool = True
    """Counts towards the GLUE score (the nine tasks; not AX, not custom tasks)."""
    custom: CustomTaskSpec | None = None
    """The user's spec for a custom task."""
    score_range: tuple[float, float] | None = None
    """A regression task's label bounds (STS-B: 0 to 5); None when unbounded."""

    @property
    def num_labels(self) -> int:
        """Output size of the classification head: 1 for regression."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split the task has, train first."""
        head = (self.train_split,) if self.train_split else ()
        return head + self.dev_splits + self.test_splits

    def metric_suffix(self, split: str) -> str:
        """The suffix of metric keys computed on ``split`` (a dev split or ``heldout``)."""
        if split == "heldout":
            return self.dev_suffixes.get(self.dev_splits[0], "") if self.dev_splits else ""
        if split not in self.dev_suffixes:
            raise ValueError(f"{self.display} has no dev split {split!r}: {self.dev_splits}")
        return self.dev_suffixes[split]

    def metric_keys(self, split: str) -> tuple[str, ...]:
        """The flat keys of the metrics computed on one dev (or heldout) split."""
        sfx = self.metric_suffix(split)
        return tuple(m + sfx for m in self.base_metrics)


# ---------------------------------------------------------------------------------------------
# The GLUE registry
# ---------------------------------------------------------------------------------------------


def _glue(
    name: str,
    display: str,
    *,
    text_columns: tuple[str, ...],
    label_names: tuple[str, ...],
    file_labels: tuple[str, ...],
    base_metrics: tuple[str, ...],
    main: str,
    files: dict[str, SplitFile],
    dev_suffixes: dict[str, str] | None = None,
    leaderboard: dict[str, str],
    folder: str | None = None,
    train: bool = True,
    eval_with: str | None = None,
    is_glue: bool = True,
    score_range: tuple[float, float] | None = None,
) -> TaskInfo:
    dev_suffixes = dev_suffixes or {"dev": ""}
    dev_splits = tuple(dev_suffixes)
    test_splits = tuple(leaderboard)
    metrics = tuple(m + s for s in dev_suffixes.values() for m in base_metrics)
    hub_splits = {s: s.replace("dev", "validation") for s in files}
    return TaskInfo(
        name=name,
        display=display,
        text_columns=text_columns,
        label_names=label_names,
        is_regression=not label_names,
        metrics=metrics if train else (),
        main_metric=main,
        dev_splits=dev_splits if train else (),
        test_splits=test_splits,
        leaderboard_files=leaderboard,
        base_metrics=base_metrics,
        dev_suffixes=dev_suffixes if train else {},
        train_split="train" if train else None,
        eval_with=eval_with,
        folder=folder or display,
        files=files,
        file_labels=file_labels,
        hub_config=name,
        hub_splits=hub_splits,
        is_glue=is_glue,
        score_range=score_range,
    )


def _pair_files(
    a: str, b: str, label: str, splits: tuple[str, ...] = ("train", "dev", "test")
) -> dict[str, SplitFile]:
    """``<split>.tsv`` files with a header naming text columns ``a``/``b`` and the label column
    (test files have no label column)."""
    return {
        s: SplitFile(f"{s}.tsv", (a, b), None if s.startswith("test") else label) for s in splits
    }


_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")

_REGISTRY: tuple[TaskInfo, ...] = (
    _glue(
        "cola",
        "CoLA",
        text_columns=("sentence",),
        label_names=("unacceptable", "acceptable"),
        file_labels=("0", "1"),
        base_metrics=("mcc",),
        main="mcc",
        files={
            # train/dev: no header; source, label, original label (blank), sentence
            "train": SplitFile("train.tsv", (3,), 1, header=False, ncols=4),
            "dev": SplitFile("dev.tsv", (3,), 1, header=False, ncols=4),
            "test": SplitFile("test.tsv", ("sentence",)),
        },
        leaderboard={"test": "CoLA.tsv"},
    ),
    _glue(
        "sst2",
        "SST-2",
        text_columns=("sentence",),
        label_names=("negative", "positive"),
        file_labels=("0", "1"),
        base_metrics=("accuracy",),
        main="accuracy",
        files={
            "train": SplitFile("train.tsv", ("sentence",), "label"),
            "dev": SplitFile("dev.tsv", ("sentence",), "label"),
            "test": SplitFile("test.tsv", ("sentence",)),
        },
        leaderboard={"test": "SST-2.tsv"},
    ),
    _glue(
        "mrpc",
        "MRPC",
        text_columns=("sentence1", "sentence2"),
        label_names=("not_equivalent", "equivalent"),
        file_labels=("0", "1"),
        base_metrics=("f1", "accuracy"),
        main="f1",
        # train/dev start with a UTF-8 byte-order mark; the header is Quality #1 ID #2 ID ...
        files=_pair_files("#1 String", "#2 String", "Quality"),
        leaderboard={"test": "MRPC.tsv"},
    ),
    _glue(
        "stsb",
        "STS-B",
        text_columns=("sentence1", "sentence2"),
        label_names=(),
        file_labels=(),
        base_metrics=("pearson", "spearman"),
        main="pearson",
        files=_pair_files("sentence1", "sentence2", "score"),
        leaderboard={"test": "STS-B.tsv"},
        score_range=(0.0, 5.0),
    ),
    _glue(
        "qqp",
        "QQP",
        text_columns=("question1", "question2"),
        label_names=("not_duplicate", "duplicate"),
        file_labels=("0", "1"),
        base_metrics=("f1", "accuracy"),
        main="f1",
        files=_pair_files("question1", "question2", "is_duplicate"),
        leaderboard={"test": "QQP.tsv"},
    ),
    _glue(
        "mnli",
        "MNLI",
        text_columns=("premise", "hypothesis"),
        label_names=_NLI3,
        file_labels=_NLI3,
        base_metrics=("accuracy",),
        main="accuracy_m",
        files=_pair_files(
            "sentence1",
            "sentence2",
            "gold_label",
            ("train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched"),
        ),
        dev_suffixes={"dev_matched": "_m", "dev_mismatched": "_mm"},
        leaderboard={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
    ),
    _glue(
        "qnli",
        "QNLI",
        text_columns=("question", "sentence"),
        label_names=_NLI2,
        file_labels=_NLI2,
        base_metrics=("accuracy",),
        main="accuracy",
        files=_pair_files("question", "sentence", "label"),
        leaderboard={"test": "QNLI.tsv"},
    ),
    _glue(
        "rte",
        "RTE",
        text_columns=("sentence1", "sentence2"),
        label_names=_NLI2,
        file_labels=_NLI2,
        base_metrics=("accuracy",),
        main="accuracy",
        files=_pair_files("sentence1", "sentence2", "label"),
        leaderboard={"test": "RTE.tsv"},
    ),
    _glue(
        "wnli",
        "WNLI",
        text_columns=("sentence1", "sentence2"),
        label_names=("not_entailment", "entailment"),
        file_labels=("0", "1"),
        base_metrics=("accuracy",),
        main="accuracy",
        files=_pair_files("sentence1", "sentence2", "label"),
        leaderboard={"test": "WNLI.tsv"},
    ),
    _glue(
        "ax",
        "AX",
        text_columns=("premise", "hypothesis"),
        label_names=_NLI3,
        file_labels=_NLI3,
        base_metrics=(),
        main="",
        files={"test": SplitFile("diagnostic.tsv", ("sentence1", "sentence2"))},
        leaderboard={"test": "AX.tsv"},
        folder="diagnostic",
        train=False,
        eval_with="mnli",
        is_glue=False,
    ),
)

_BY_NAME: dict[str, TaskInfo] = {t.name: t for t in _REGISTRY}

_ALIASES: dict[str, str] = {
    "diagnostic": "ax",
    "glueax": "ax",
    "glue_diagnostic": "ax",
    "stsbenchmark": "stsb",
}


def _norm(name: str) -> str:
    """Lower-case, drop ``-``, ``_``, spaces and dots: ``"SST-2"`` -> ``"sst2"``."""
    return re.sub(r"[-_\s.]", "", name.strip().lower())


def task_names() -> list[str]:
    """Canonical names of the GLUE registry, in GLUE order (AX last)."""
    return [t.name for t in _REGISTRY]


def glue_tasks() -> list[TaskInfo]:
    """The nine tasks that count towards the GLUE score, in registry order."""
    return [t for t in _REGISTRY if t.is_glue]


def custom_task_info(name: str, spec: CustomTaskSpec) -> TaskInfo:
    """Build the record of a user's task from its :class:`CustomTaskSpec`."""
    metrics = tuple(spec.metrics)
    if spec.regression and "metrics" not in spec.model_fields_set:
        metrics = ("pearson", "spearman")  # the spec's default (accuracy) is for classification
    allowed = REGRESSION_METRICS if spec.regression else CLASSIFICATION_METRICS
    kind = "regression" if spec.regression else "classification"
    for m in metrics:
        if m not in allowed:
            raise SpecError(
                f"data.custom_tasks.{name}.metrics: {m!r} is not a {kind} metric; "
                f"choose from {', '.join(allowed)}"
            )
    if not metrics:
        raise SpecError(f"data.custom_tasks.{name}.metrics: give at least one metric")
    main = spec.main_metric or metrics[0]
    if main not in metrics:
        raise SpecError(
            f"data.custom_tasks.{name}.main_metric: {main!r} is not one of its metrics "
            f"{list(metrics)}"
        )
    labels = tuple(spec.labels or ())
    if len(set(labels)) != len(labels):
        raise SpecError(f"data.custom_tasks.{name}.labels: label names must be distinct")
    text_columns = (spec.text_a,) if spec.text_b is None else (spec.text_a, spec.text_b)
    return TaskInfo(
        name=name,
        display=name,
        text_columns=text_columns,
        label_names=labels,
        is_regression=spec.regression,
        metrics=metrics,
        main_metric=main,
        dev_splits=("dev",),
        test_splits=("test",) if spec.test is not None else (),
        leaderboard_files={},
        base_metrics=metrics,
        dev_suffixes={"dev": ""},
        file_labels=labels,
        is_glue=False,
        custom=spec,
    )


def get_task(name: str, data: DataSpec | None = None) -> TaskInfo:
    """Look a task up by name: a GLUE task in any common spelling, or one of ``data.custom_tasks``.

    Raises :class:`SpecError` with a did-you-mean for an unknown name.
    """
    custom = dict(data.custom_tasks) if data is not None else {}
    key = _norm(name)
    glue_name = _ALIASES.get(key, key)
    if name in custom:
        if glue_name in _BY_NAME:
            raise SpecError(
                f"data.custom_tasks: {name!r} clashes with the GLUE task "
                f"{_BY_NAME[glue_name].display}; give the custom task another name"
            )
        return custom_task_info(name, custom[name])
    if glue_name in _BY_NAME:
        return _BY_NAME[glue_name]
    for cname, cspec in custom.items():
        if _norm(cname) == key:
            return custom_task_info(cname, cspec)
    choices = [t.name for t in _REGISTRY] + [t.display for t in _REGISTRY] + list(custom)
    hint = did_you_mean(name, choices, after=" ", n=3, cutoff=0.5) or did_you_mean(
        key, [_norm(c) for c in choices], after=" ", n=3, cutoff=0.5
    )
    known = ", ".join(task_names() + list(custom))
    raise SpecError(f"unknown task {name!r}; {hint}known tasks: {known}")
