"""The experiment spec's schema: frozen pydantic models, unknown keys rejected.

Everything past :func:`addrop_cli.spec.load_spec` works with these objects, never with raw dicts.
Method parameters are a discriminated union on ``method``, built from the method registry, so
each method checks its own fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from addrop_cli.data.config import DataSpec
from addrop_cli.methods.registry import METHODS
from addrop_cli.models.config import AdapterSpec, ModelSpec
from addrop_cli.settings import Frozen, check_names
from addrop_cli.spec.backends import registered_backend
from addrop_cli.spec.trackers import TrackingSpec

MethodParams = Annotated[
    Union[tuple(info.params for info in METHODS.values())],  # noqa: UP007
    Field(discriminator="method"),
]
"""One variant's parameters: the registered method that its ``method:`` names."""


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A run's seed: numpy and CUDA take 32-bit seeds."""


def _any_char(value: Any, bad: Callable[[str], bool]) -> bool:
    """True when a character of a string in ``value`` (or its items, keys) is ``bad``."""
    if isinstance(value, dict):
        return any(_any_char(k, bad) or _any_char(v, bad) for k, v in value.items())
    if isinstance(value, list):
        return any(_any_char(item, bad) for item in value)
    return isinstance(value, str) and any(bad(c) for c in value)


def _control(c: str) -> bool:
    return ord(c) < 32 or ord(c) == 127


def _blank_or_control(c: str) -> bool:
    return c.isspace() or _control(c)


class TrainSpec(Frozen):
    """Training settings; the defaults are the AD-DROP reference recipe."""

    epochs: Annotated[int, Field(ge=1)] = 3
    batch_size: Annotated[int, Field(ge=1)] = 16
    eval_batch_size: Annotated[int, Field(ge=1)] = 64
    lr: Annotated[float, Field(gt=0)] = 1e-5
    schedule: Literal["constant", "linear"] = "constant"
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.0
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    max_length: Annotated[int, Field(ge=8)] = 128
    patience: Annotated[int, Field(ge=1)] | None = 5
    """Stop after this many evaluations without improvement; null disables early stopping."""
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    grad_accum: Annotated[int, Field(ge=1)] = 1
    eval_every_steps: Annotated[int, Field(ge=1)] | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 autocast on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    save_checkpoint: bool = False
    """Save the best model (Hugging Face format, with its tokenizer) in the run's checkpoint/."""
    save_last: bool = False
    """Also save the model at the end of training in checkpoint-last/ (same format)."""
    checkpoint_every_steps: Annotated[int, Field(ge=1)] | None = None
    """Also write the training state every N optimiser steps (it is always written at the end
    of every epoch), so a killed or requeued run loses at most N steps."""
    keep_state: bool = False
    """Keep the training state (state/) of a finished run instead of deleting it."""
    threads: Annotated[int, Field(ge=1, le=4096)] | None = None
    """torch intra-op threads for CPU runs; null leaves torch's default."""
    group_by_length: bool = False
    """Batch examples of similar length together (random groups, seeded, as transformers'
    Trainer does): far less padding, but other examples share a batch than without it."""
    pad_to_multiple_of: Annotated[int, Field(ge=1)] | None = None
    """Round each batch's width up to a multiple of this (8 suits tensor cores under mixed
    precision on GPUs; on CPU it only adds padding)."""
    reinit_layers: Annotated[int, Field(ge=0)] = 0
    """Re-initialise the top k encoder layers and the pooler with the model's own initialiser
    before training (Zhang et al., ICLR 2021); 0 keeps every pre-trained layer."""
    layer_lr_decay: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Layer-wise learning-rate decay: the head at lr, the top layer at lr x this, each layer
    below one more factor, the embeddings lowest (Zhang et al.); 1.0 is one rate for all."""
    compile: bool = False
    """torch.compile the encoder's dense blocks (attention stays eager, through the AD-DROP hook).
    The same results up to float rounding, so not part of the run id; pays off on GPUs, after
    a compile of a minute or more."""
    adapter: AdapterSpec | None = None
    """Train a LoRA adapter and the head only (peft; docs/adapters.md); null: every weight."""


# --------------------------------------------------------------------------------------------
# Sweeps and execution back-ends
# --------------------------------------------------------------------------------------------

SweepValue = Any
"""One value a sweep sets at a spec path: a number, a string, a bool or a list (``layers``)."""

_RANGE_KEYS = {"start", "stop", "step"}


class GridRange(Frozen):
    """A compact arithmetic grid, stop included: ``{start: 0.1, stop: 0.9, step: 0.1}``."""

    start: float
    stop: float
    step: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _ordered(self) -> GridRange:
        if self.stop < self.start:
            raise ValueError("stop must be >= start")
        if (self.stop - self.start) / self.step > 10_000:
            raise ValueError("more than 10,000 values; use a larger step")
        return self

    def values(self) -> list[float | int]:
        """The grid's values, rounded so that 0.1 + 2 * 0.1 is 0.3 (and whole ranges stay int)."""
        n = int(round((self.stop - self.start) / self.step + 1e-9)) + 1
        digits = max(_decimals(self.start), _decimals(self.step)) + 1
        whole = all(float(x).is_integer() for x in (self.start, self.step))
        out: list[float | int] = []
        for i in range(n):
            value = round(self.start + i * self.step, digits)
            if value > self.stop + 1e-12:
                break
            out.append(int(value) if whole else value)
        return out


def _decimals(x: float) -> int:
    text = repr(float(x))
    if "e" in text:
        mantissa, exp = text.split("e")
        return max(0, len(mantissa.partition(".")[2]) - int(exp))
    return len(text.partition(".")[2].rstrip("0"))


class RandomDist(Frozen):
    """A distribution to sample one spec path from in a random search."""

    distribution: Literal["uniform", "log_uniform", "int_uniform", "choice"]
    low: float | None = None
    high: float | None = None
    """Bounds; ``high`` is included for ``int_uniform``."""
    values: list[SweepValue] | None = None
    """The choices, for ``choice``."""
    digits: Annotated[int, Field(ge=0, le=12)] | None = None
    """Round sampled floats to this many significant digits (e.g. 2: 0.37, 3.2e-05)."""

    @model_validator(mode="after")
    def _parameters(self) -> RandomDist:
        if self.distribution == "choice":
            if not self.values:
                raise ValueError("choice needs values: [a, b, ...]")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.distribution} needs low: and high:")
        if self.high <= self.low:
            raise ValueError("high must be > low")
        if self.distribution == "log_uniform" and self.low <= 0:
            raise ValueError("log_uniform needs low > 0")
        if self.distribution == "int_uniform" and not (
            float(self.low).is_integer() and float(self.high).is_integer()
        ):
            raise ValueError("int_uniform needs whole-number low and high")
        return self


def _flatten_paths(value: Any, leaf: Callable[[Any], bool]) -> Any:
    """``{methods: {addrop: {p: [...]}}}`` -> ``{"methods.addrop.p": [...]}``.

    Lets a command-line override such as ``sweep.grid.methods.addrop.p=[0.1,0.5]`` (which the
    override parser nests at every dot) mean the same as the YAML key ``methods.addrop.p``.
    """
    if not isinstance(value, dict):
        return value
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node and not leaf(node):
            for key, child in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), child)
        else:
            flat[prefix] = node

    for key, child in value.items():
        walk(str(key), child)
    return flat


class SweepSpec(Frozen):
    """A hyperparameter search over spec paths, and how the winner is chosen and reported."""

    grid: dict[str, list[SweepValue] | GridRange] = Field(default_factory=dict)
    """Spec path -> values (every combination runs), or ``{start, stop, step}``."""
    random: dict[str, RandomDist] = Field(default_factory=dict)
    """Spec path -> distribution; ``samples`` draws, crossed with the grid."""
    samples: Annotated[int, Field(ge=1)] = 10
    seed: int = 0
    """Seed of the random search's draws and of the tpe/cmaes samplers."""
    search: Literal["grid", "random", "tpe", "cmaes"] = "grid"
    """grid/random: every point planned up front; tpe/cmaes: Optuna proposes ``trials`` points."""
    trials: Annotated[int, Field(ge=1)] = 20
    pruner: Literal["none", "median", "hyperband"] = "none"
    """Stop a tpe/cmaes trial at an epoch whose selection score cannot win (Optuna's pruners)."""
    startup_trials: Annotated[int, Field(ge=0)] | None = None
    """Random start-up trials before the model proposes (default: docs/sweeps.md's rule)."""
    pruner_startup_trials: Annotated[int, Field(ge=0)] = 2
    """The median pruner judges a trial only once this many trials finished."""
    pruner_warmup_epochs: Annotated[int, Field(ge=0)] = 0
    """A run is never pruned in its first this-many epochs."""
    max_repeats: Annotated[int, Field(ge=0)] = 20
    """Proposals of a point already run that are asked again before the search stops."""
    protocol: Literal["two_stage", "paper"] = "two_stage"
    """two_stage: pick on select_seeds, report the winner on report_seeds. paper: best of the
    grid on the same dev set (the AD-DROP paper's protocol; optimistic, labelled as such)."""
    select_seeds: list[Seed] | None = Field(default=None, min_length=1)
    """Seeds of the selection stage (default: the spec's seeds)."""
    report_seeds: list[Seed] | None = Field(default=None, min_length=1)
    """Seeds the winner (and every variant not swept) is reported on; disjoint from
    select_seeds."""

    @field_validator("grid", mode="before")
    @classmethod
    def _flat_grid(cls, v: Any) -> Any:
        return _flatten_paths(v, lambda d: set(d) <= _RANGE_KEYS)

    @field_validator("random", mode="before")
    @classmethod
    def _flat_random(cls, v: Any) -> Any:
        return _flatten_paths(v, lambda d: "distribution" in d)

    @field_validator("grid")
    @classmethod
    def _non_empty_lists(cls, v: dict[str, Any]) -> dict[str, Any]:
        for path, values in v.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"{path}: give at least one value")
            if isinstance(values, list) and len({repr(x) for x in values}) != len(values):
                raise ValueError(f"{path}: values must be distinct, got {values}")
        return v

    @field_validator("select_seeds", "report_seeds")
    @classmethod
    def _distinct(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v

    def grid_values(self) -> dict[str, list[SweepValue]]:
        """The grid with every compact range expanded."""
        return {
            path: values.values() if isinstance(values, GridRange) else list(values)
            for path, values in self.grid.items()
        }


class SlurmSpec(Frozen):
    """Resources of each Slurm job (one array task per run, or per ``runs_per_job`` runs)."""

    partition: str | None = None
    gpus: Annotated[int, Field(ge=0)] = 0
    """GPUs per job (--gpus-per-node)."""
    cpus: Annotated[int, Field(ge=1)] = 2
    """CPUs per job (--cpus-per-task); also the torch threads of a CPU run."""
    mem_gb: Annotated[float, Field(gt=0, le=100_000)] = 8.0
    time_min: Annotated[int, Field(ge=1, le=1_000_000)] = 60
    """Time limit per job; a job that reaches it is requeued and resumes."""
    array_parallelism: Annotated[int, Field(ge=1)] = 64
    """At most this many array tasks run at once."""
    runs_per_job: Annotated[int, Field(ge=1)] = 1
    """Runs done one after another inside each array task (for many short runs)."""
    max_requeues: Annotated[int, Field(ge=0)] = 3
    """Requeues after a time-out (pre-emptions are requeued without limit)."""
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: list[str] = Field(default_factory=list)
    """Shell lines run before each job, e.g. ``module load cuda``."""
    extra: dict[str, str] = Field(default_factory=dict)
    """Other sbatch options, e.g. ``{mail-type: END}``."""
    log_dir: Path | None = None
    """Where job scripts and logs go (default: ``<results>/<experiment>/slurm``)."""

    @field_validator("setup", "log_dir", mode="before")
    @classmethod
    def _one_line(cls, v: Any) -> Any:
        # each item becomes one line of the job script: a newline would add lines unseen
        if _any_char(v, _control):
            raise ValueError("holds a newline or control character; give one line per item")
        return v

    @field_validator("partition", "account", "qos", "constraint", mode="before")
    @classmethod
    def _one_word(cls, v: Any) -> Any:
        # each becomes one `#SBATCH --key=value` line: a newline would start an option (or a
        # command) of the value's choosing, and no Slurm name holds a blank
        if _any_char(v, _blank_or_control):
            raise ValueError(
                "holds a newline, blank or control character, which would add lines or options "
                "to the job script; give one name (e.g. gpu)"
            )
        return v

    @field_validator("extra", mode="before")
    @classmethod
    def _sbatch_options(cls, v: Any) -> Any:
        for key, value in v.items() if isinstance(v, dict) else ():
            if not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", str(key)):
                raise ValueError(f"{str(key)!r} is not an sbatch option name (e.g. mail-type)")
            if _any_char(value, _control):
                raise ValueError(
                    f"{key}: holds a newline or control character, which would add lines to the "
                    "job script; give one line"
                )
        return v


BackendName = Annotated[str, BeforeValidator(registered_backend)]


class ExecutorSpec(Frozen):
    """Where and how runs execute: never part of a run's identity."""

    backend: BackendName = "local"
    workers: Annotated[int, Field(ge=0, le=1024)] = 1
    """Local worker processes; 0 or ``auto``: one per visible GPU (one on a CPU machine)."""
    runs_per_gpu: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = 1
    """Local workers per visible GPU (the pool then has K x GPUs workers); ``auto``: as many as
    fit in the GPU's free memory (at most 8). CPU machines: ``workers`` sets the pool. 0 is
    refused: it used to mean auto, which is now spelled out."""
    threads: Annotated[int, Field(ge=1, le=4096)] | None = None
    """torch threads per local worker (default: the cores divided among workers)."""
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)

    @field_validator("workers", "runs_per_gpu", mode="before")
    @classmethod
    def _auto(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str) and v.strip() != "auto" and not v.strip().isdigit():
            raise ValueError(f"expected a whole number or auto, got {v!r}")
        auto = isinstance(v, str) and v.strip() == "auto"
        if info.field_name == "workers":
            return 0 if auto else v
        if not auto and str(v).strip() == "0":  # once auto's stored form: name the word to use
            raise ValueError("0 runs per GPU cannot run: write auto (as many as fit) or 1")
        return "auto" if auto else v


class ExperimentSpec(Frozen):
    """A whole experiment: tasks x method variants x seeds."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    model: ModelSpec
    tasks: list[str] = Field(min_length=1)
    data: DataSpec = Field(default_factory=DataSpec)
    seeds: list[Seed] = Field(min_length=1)
    train: TrainSpec = Field(default_factory=TrainSpec)
    methods: dict[str, MethodParams] = Field(min_length=1)
    """Named method variants, e.g. ``addrop-ga`` and ``addrop-rd``."""
    reference: str | None = None
    """The variant that deltas and tests compare against (default: a baseline variant)."""
    results_dir: Path = Path("results")
    factors: dict[str, list[SweepValue]] = Field(default_factory=dict)
    """Spec path -> values: each value is a setting of its own, crossed with tasks, variants
    and seeds (``data.train_size: [500, 1000]``); checked in :mod:`addrop_cli.spec.factors`."""
    sweep: SweepSpec | None = None
    """A hyperparameter search (``addrop sweep``); ``addrop run`` ignores it."""
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    """Trackers that follow every run (or ``--track``); never part of a run's identity."""
    variant_train: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Variant -> the training settings it changes, written as ``methods.<variant>.train``
    (re-initialisation or layer-wise decay on one variant, for example); the rest of ``train``
    applies to it as to every variant."""

    @model_validator(mode="before")
    @classmethod
    def _own_train_settings(cls, data: Any) -> Any:
        """``methods.<variant>.train`` is not a method parameter: keep it in ``variant_train``."""
        methods = data.get("methods") if isinstance(data, dict) else None
        if not isinstance(methods, dict):
            return data
        own = {n: v["train"] for n, v in methods.items() if isinstance(v, dict) and "train" in v}
        if not own:
            return data
        methods = {
            n: {k: x for k, x in v.items() if k != "train"} if n in own else v
            for n, v in methods.items()
        }
        return {**data, "methods": methods, "variant_train": own}

    @model_validator(mode="after")
    def _own_train_settings_valid(self) -> ExperimentSpec:
        for variant, override in self.variant_train.items():
            if variant not in self.methods:
                raise ValueError(f"variant_train: {variant!r} is not a variant of methods")
            if not isinstance(override, dict):
                raise ValueError(f"methods.{variant}.train: expected a mapping of train settings")
            try:
                self.train_of(variant)
            except ValueError as err:  # pydantic's ValidationError: its first problem, one line
                first = err.errors()[0] if hasattr(err, "errors") else {"loc": (), "msg": str(err)}
                where = ".".join(str(x) for x in first["loc"])
                what = first["msg"]
                if first.get("type") == "extra_forbidden":
                    what = f"not a train setting (they are: {', '.join(TrainSpec.model_fields)})"
                raise ValueError(f"methods.{variant}.train.{where}: {what}") from None
        return self

    def train_of(self, variant: str) -> TrainSpec:
        """The training settings of one variant: ``train`` with its own changes applied."""
        override = self.variant_train.get(variant)
        if not override:
            return self.train
        return TrainSpec.model_validate({**self.train.model_dump(), **override})

    @field_validator("results_dir", mode="before")
    @classmethod
    def _results_dir_given(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            raise ValueError("must not be empty (it would write into the working folder)")
        return v

    @field_validator("methods", mode="before")
    @classmethod
    def _variant_names(cls, v: Any) -> Any:
        return check_names(v, "variant")

    @field_validator("factors", mode="before")
    @classmethod
    def _flat_factors(cls, v: Any) -> Any:
        return _flatten_paths(v, lambda d: False)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v
