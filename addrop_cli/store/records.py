"""The store's typed contract: what run.json, epochs.jsonl, metrics.json and predictions.json hold.

Training writes these records and reports read them back through the same models, so the format
is defined once, here, with its version. Every model keeps unknown keys (``extra="allow"``): a
newer writer's additions survive a round trip through an older reader, and a file that lacks a
required key or holds a wrong type is a validation error the reader turns into a clear line.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from addrop_cli.store.identity import run_identity, variant_identity

FORMAT_VERSION = 2
"""The store format written and understood here. Additions with defaults keep the version;
anything an older reader would misread bumps it. Format 2 counts epochs from 1, as the Trainer's
users do (``EpochRecord.epoch``, ``RunMetrics.best_epoch``); format 1 counted them from 0 and is
read by adding 1 (:func:`epochs_from_one`)."""

EPOCHS_FROM_ONE = 2
"""The first store format whose epochs are counted from 1."""


def epochs_from_one(format_version: int, epoch: int) -> int:
    """A stored epoch number counted from 1, whichever format stored it."""
    return epoch if format_version >= EPOCHS_FROM_ONE else epoch + 1


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class SweepInfo(Record):
    point: dict[str, Any] | None = None
    """Spec path -> value of the sweep point this run belongs to."""
    stage: str | None = None
    """``select`` for runs that only choose hyperparameters; else the reported stage."""


class RunConfig(Record):
    """``run.json``: the resolved run, written first when a run starts."""

    format: int = FORMAT_VERSION
    run_id: str
    identity: dict[str, Any] | None = None
    """What determines the run's result (hashed into ``run_id``); absent in runs stored before
    it was recorded."""
    experiment: str = ""
    spec_hash: str = ""
    """The spec version that started the run (settings that change no result left out)."""
    task: str
    variant: str
    method: str = ""
    method_params: dict[str, Any] = Field(default_factory=dict)
    seed: int
    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    sweep: SweepInfo | None = None
    factors: dict[str, Any] | None = None
    """Spec path -> value of the spec's ``factors`` point this run belongs to."""

    def variant_identity(self) -> str:
        """What makes two runs the same variant (see :func:`identity.variant_identity`); a run
        stored before identities were recorded is compared by its full settings."""
        identity = self.identity
        if identity is None:
            identity = run_identity(
                task=self.task, seed=self.seed, params=self.method_params, model=self.model,
                train=self.train, data=self.data, sweep=None, factors=None,
            )  # fmt: skip
        point = self.sweep.point if self.sweep else None
        return variant_identity(identity, point, self.factors)


class EpochRecord(Record):
    """One line of ``epochs.jsonl``: one evaluation (after an epoch, or every N steps)."""

    epoch: int
    """The epoch this evaluation falls in, counted from 1 (an end-of-epoch evaluation's epoch
    is the number of epochs trained)."""
    step: int
    train_loss: float
    select: dict[str, float]
    """Metrics on the split that early stopping watches (dev, or the held-out carve-out)."""
    dev: dict[str, float]
    dev_loss: dict[str, float] = Field(default_factory=dict)
    """Dev split -> mean task loss (cross-entropy, or MSE for regression)."""
    select_loss: dict[str, float] = Field(default_factory=dict)
    epoch_time_s: float = 0.0
    """Seconds of training since the epoch began, up to this evaluation (evaluations and state
    writes not counted; before the cost fields below were recorded, an epoch's mid-epoch
    evaluations were)."""
    train_samples_per_s: float = 0.0
    lr: float = 0.0
    method: dict[str, float] = Field(default_factory=dict)
    """The method's per-step means over the epoch (e.g. AD-DROP's dropped fraction)."""
    # cost measurements (not state, not identity); None: not recorded (older stores), unknown
    steps: int | None = None
    """Optimiser steps since the epoch began, up to this evaluation."""
    cpu_time_s: float | None = None
    """Process CPU seconds (all its threads) of training since the epoch began, up to this
    evaluation, counted as ``epoch_time_s`` is."""
    load_1m: float | None = None
    """The machine's 1-minute load average when the evaluation began (None where the platform
    has none)."""
    cpus: int | None = None
    """The machine's logical CPUs (``os.cpu_count()``), to read ``load_1m`` against."""


class SplitMetrics(Record):
    dev: dict[str, float]
    select: dict[str, float] = Field(default_factory=dict)


class RunMetrics(Record):
    """``metrics.json`` of a finished run (its DONE marker is written after it)."""

    format: int = FORMAT_VERSION
    status: Literal["done"] = "done"
    task: str
    variant: str
    seed: int
    main_metric: str
    best_epoch: int
    """Counted from 1, as ``EpochRecord.epoch``."""
    best_step: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    best: SplitMetrics
    last: SplitMetrics
    selection: Literal["dev", "heldout"] = "dev"
    train_examples: int = 0
    # cost: None where a run did not record it
    wall_time_s: float | None = None
    """Over every attempt since the run last started from step 0 (a resumed or requeued run's
    earlier attempts included; see ``attempts``)."""
    attempts: int = 1
    """How many attempts (starts, resumed or not) the run took since it last started clean."""
    train_time_s: float | None = None
    prepare_time_s: float | None = None
    """The method's pass over the training data before the first step (Child-Tuning_D's Fisher
    information), inside ``wall_time_s``; None for methods without one."""
    train_samples_per_s: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str = ""
    device: str = ""
    precision: str = ""
    compiled: bool = False
    """Whether train.compile compiled the model (False where the family could not be)."""
    trainable_parameters: int | None = None
    """Parameters the optimiser updates (a LoRA run: the adapter and the head)."""
    total_parameters: int | None = None
    """Every parameter of the model trained (a LoRA run: the frozen base too)."""


class FailedMetrics(Record):
    """``metrics.json`` of a failed run (its FAILED marker holds the same reason)."""

    format: int = FORMAT_VERSION
    status: Literal["failed"] = "failed"
    task: str
    variant: str
    seed: int
    error: str


class SplitPredictions(Record):
    """One dev split's entry in ``predictions.json``: its examples' guids, predictions, labels."""

    guids: list[str]
    predictions: list[float | int]
    labels: list[float | int | None]
