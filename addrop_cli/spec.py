"""The experiment spec as frozen pydantic models.

Everything past :func:`addrop_cli.spec.load_spec` works with these objects, never with raw dicts.
Every model forbids unknown keys, so a misspelt key is an error rather than a silently ignored
setting. Method parameters are a discriminated union on ``method``: each method checks its own
fields.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from addrop_cli.errors import SpecError

Probability = Annotated[float, Field(gt=0.0, le=1.0)]
"""A rate in (0, 1]: AD-DROP's p and q."""

DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]
"""A dropout rate in [0, 1)."""


class Frozen(BaseModel):
    """Base for every spec model: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Frozen):
    """The pre-trained encoder: a Hub id or a local folder in the Hugging Face layout."""

    name_or_path: str = Field(min_length=1)
    tokenizer: str | None = None
    """Tokenizer Hub id or folder, when it differs from the model's."""
    pretrained: bool = True
    """False builds the model from its config with random weights (tests, smoke runs)."""
    revision: str | None = None


class CustomTaskSpec(Frozen):
    """A task of the user's own, read from CSV / TSV / JSON-lines files with a column mapping."""

    train: Path
    dev: Path
    test: Path | None = None
    text_a: str = Field(min_length=1)
    text_b: str | None = None
    label: str = "label"
    labels: list[str] | None = None
    """Label names in order (classification); omit with ``regression: true``."""
    regression: bool = False
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"])
    main_metric: str | None = None

    @model_validator(mode="after")
    def _labels_or_regression(self) -> CustomTaskSpec:
        if self.regression and self.labels:
            raise ValueError("give either labels (classification) or regression: true, not both")
        if not self.regression and not self.labels:
            raise ValueError("a classification task needs labels: [name, ...]")
        return self


class DataSpec(Frozen):
    """Where the data comes from and how much of it a run uses."""

    source: Literal["auto", "glue_dir", "hub"] = "auto"
    """auto: ``glue_dir`` (or ADDROP_GLUE_DIR) when set, else the Hub dataset ``nyu-mll/glue``."""
    glue_dir: Path | None = None
    train_size: Annotated[float, Field(gt=0)] | None = None
    """A count (>= 1) or a fraction (< 1) of the training set, stratified by label, seeded."""
    heldout: Annotated[float, Field(gt=0)] | None = None
    """Carve this many (>= 1) or this fraction (< 1) of train out as the selection split, used
    for early stopping and selection, leaving the GLUE dev set for reporting only."""
    dev_size: Annotated[int, Field(ge=1)] | None = None
    """Use only the first N dev examples (quick checks; reports say so)."""
    cache_dir: Path | None = None
    custom_tasks: dict[str, CustomTaskSpec] = Field(default_factory=dict)

    @field_validator("train_size", "heldout")
    @classmethod
    def _count_or_fraction(cls, v: float | None) -> float | None:
        if v is not None and v >= 1 and v != int(v):
            raise ValueError(f"must be a fraction below 1 or a whole count, got {v}")
        return v


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
    threads: Annotated[int, Field(ge=1)] | None = None
    """torch intra-op threads for CPU runs; null leaves torch's default."""


class BaselineParams(Frozen):
    """Plain fine-tuning with the model's own dropout."""

    method: Literal["baseline"] = "baseline"


class DropoutParams(Frozen):
    """Fine-tuning with hidden and attention-probability dropout rates set here."""

    method: Literal["dropout"] = "dropout"
    hidden_dropout: DropoutRate = 0.1
    attention_dropout: DropoutRate = 0.1


class AddropParams(Frozen):
    """AD-DROP, as ALGORITHM.md defines it."""

    method: Literal["addrop"] = "addrop"
    attribution: Literal["gradient", "integrated_gradient", "attention", "random"] = "gradient"
    drop: Literal["high", "low"] = "high"
    p: Probability = 0.3
    q: Probability = 0.2
    layers: list[Annotated[int, Field(ge=0)]] | Literal["all"] = Field(default_factory=lambda: [0])
    cross_tuning: bool = True
    ig_steps: Annotated[int, Field(ge=1)] = 20

    @field_validator("layers")
    @classmethod
    def _distinct_layers(cls, v: list[int] | str) -> list[int] | str:
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one layer index, or 'all'")
            if len(set(v)) != len(v):
                raise ValueError(f"layer indices must be distinct, got {v}")
            return sorted(v)
        return v


MethodParams = Annotated[
    BaselineParams | DropoutParams | AddropParams, Field(discriminator="method")
]
METHOD_NAMES = ("baseline", "dropout", "addrop")


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
    """Seed of the random search's draws (the runs' own seeds are select/report_seeds)."""
    protocol: Literal["two_stage", "paper"] = "two_stage"
    """two_stage: pick on select_seeds, report the winner on report_seeds. paper: best of the
    grid on the same dev set (the AD-DROP paper's protocol; optimistic, labelled as such)."""
    select_seeds: list[int] | None = Field(default=None, min_length=1)
    """Seeds of the selection stage (default: the spec's seeds)."""
    report_seeds: list[int] | None = Field(default=None, min_length=1)
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
    mem_gb: Annotated[float, Field(gt=0)] = 8.0
    time_min: Annotated[int, Field(ge=1)] = 60
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


class ExecutorSpec(Frozen):
    """Where and how runs execute: never part of a run's identity."""

    backend: Literal["local", "slurm"] = "local"
    workers: Annotated[int, Field(ge=0)] = 1
    """Local worker processes; 0 or ``auto``: one per visible GPU (one on a CPU machine)."""
    threads: Annotated[int, Field(ge=1)] | None = None
    """torch threads per local worker on CPU (default: the cores divided among workers)."""
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)

    @field_validator("workers", mode="before")
    @classmethod
    def _auto(cls, v: Any) -> Any:
        return 0 if v == "auto" else v


class ExperimentSpec(Frozen):
    """A whole experiment: tasks x method variants x seeds."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    model: ModelSpec
    tasks: list[str] = Field(min_length=1)
    data: DataSpec = Field(default_factory=DataSpec)
    seeds: list[int] = Field(min_length=1)
    train: TrainSpec = Field(default_factory=TrainSpec)
    methods: dict[str, MethodParams] = Field(min_length=1)
    """Named method variants, e.g. ``addrop-ga`` and ``addrop-rd``."""
    reference: str | None = None
    """The variant that deltas and tests compare against (default: a baseline variant)."""
    results_dir: Path = Path("results")
    sweep: SweepSpec | None = None
    """A hyperparameter search (``addrop sweep``); ``addrop run`` ignores it."""
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v


# --------------------------------------------------------------------------------------------
# Loading: YAML -> overrides merged -> validated, frozen ExperimentSpec
# --------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1}); keep one of them",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates
)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a spec file into a mapping, turning every YAML problem into one SpecError line."""
    if not path.exists():
        raise SpecError(f"{path}: file not found; check the path (run from the project folder?)")
    if path.is_dir():
        raise SpecError(f"{path}: is a folder; give the path of a YAML spec file")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        what = " ".join(str(s) for s in (e.context, e.problem) if s)
        fix = "" if "; " in what else "; fix the syntax there"
        raise SpecError(f"{path}: {where}: malformed YAML: {what}{fix}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: malformed YAML: {e}; fix the file") from None
    if raw is None:
        raise SpecError(f"{path}: the file is empty; write a spec (see experiments/smoke.yaml)")
    if not isinstance(raw, dict):
        raise SpecError(
            f"{path}: the top level must be a mapping of keys (name:, model:, tasks:, ...), "
            f"got a {type(raw).__name__}; see experiments/smoke.yaml"
        )
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-parsed value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise SpecError(
            f"override {text!r}: expected key=value with a dotted key path, "
            "e.g. train.epochs=1 or methods.addrop.p=0.5"
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value  # not YAML: keep the raw string and let validation judge it
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Merge ``key=value`` overrides into a copy of ``raw`` (command line beats YAML).

    Missing mappings along the path are created, so ``methods.new.method=addrop`` adds a variant;
    whether the resulting keys are allowed is for validation to say.
    """
    merged = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        set_path(merged, path, value, f"override {text!r}")
    return merged


def set_path(raw: dict[str, Any], path: list[str], value: Any, what: str) -> None:
    """Set ``raw[a][b][c] = value`` for the key path ``a.b.c`` (list items by index), in place.

    ``what`` names the setting in the error raised when the path runs into a non-mapping.
    """
    node: Any = raw
    for i, part in enumerate(path):
        where = ".".join(path[: i + 1])
        last = i == len(path) - 1
        if isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            parent = ".".join(path[:i])
            raise SpecError(
                f"{what}: {parent} is a {type(node).__name__} and has no "
                f"key {part!r}; check the key path ({where})"
            )


def _infer_variant_methods(raw: dict[str, Any]) -> None:
    """Let ``baseline: {}`` or ``addrop-rd: {attribution: random}`` omit ``method:``.

    A variant without ``method`` takes it from its name: the whole name, or the part before the
    first ``-`` or ``_``, when that is a method name. Anything else is left for validation.
    """
    methods = raw.get("methods")
    if not isinstance(methods, dict):
        return
    for name, params in list(methods.items()):
        if params is None:
            params = methods[name] = {}
        if isinstance(params, dict) and "method" not in params:
            stem = re.split(r"[-_]", str(name), maxsplit=1)[0]
            for candidate in (str(name), stem):
                if candidate in METHOD_NAMES:
                    params["method"] = candidate
                    break


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model class that owns the mapping at ``loc`` (for listing its allowed keys)."""
    model: Any = ExperimentSpec
    i = 0
    while i < len(loc):
        field = model.model_fields.get(loc[i]) if isinstance(model, type) else None
        if field is None:
            return None
        annotation = field.annotation
        if loc[i] == "methods":
            # methods.<variant>.<method tag>: the tag picks the params model
            if i + 2 < len(loc):
                model = METHOD_PARAMS.get(loc[i + 2])
                i += 3
                continue
            return None
        args = [a for a in get_args(annotation) if isinstance(a, type)] or [annotation]
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return None
        i += 1
    return model


def _format_loc(loc: tuple[Any, ...]) -> str:
    # Drop the discriminator tag pydantic puts after a variant: methods.a.addrop.p -> methods.a.p
    parts = list(loc)
    if len(parts) >= 3 and parts[0] == "methods" and parts[2] in METHOD_NAMES:
        del parts[2]
    return ".".join(str(p) for p in parts) or "(top level)"


def _explain(error: dict[str, Any]) -> str:
    """One pydantic error -> 'what is wrong; how to fix it'."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        owner = _model_at(loc[:-1])
        allowed = list(owner.model_fields) if owner else []
        hint = _did_you_mean(loc[-1], allowed) or (
            f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        )
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing; add it"
    if kind == "union_tag_invalid":
        return (
            f"unknown method {ctx.get('tag')!r}{_did_you_mean(ctx.get('tag'), METHOD_NAMES)}"
            f" (methods: {', '.join(METHOD_NAMES)})"
        )
    if kind == "union_tag_not_found":
        return f"say which method this variant runs: method: {' | '.join(METHOD_NAMES)}"
    bounds = {
        "greater_than": "> {gt}",
        "greater_than_equal": ">= {ge}",
        "less_than": "< {lt}",
        "less_than_equal": "<= {le}",
    }
    if kind in bounds:
        if loc[-1] in ("p", "q"):
            return f"must be in (0, 1], got {value}"
        return f"must be {bounds[kind].format(**ctx)}, got {value}"
    if kind == "too_short":
        return "must not be empty; give at least one item"
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not allowed: use letters, digits, '_', '-' and '.'"
    if kind == "literal_error":
        hint = _did_you_mean(value, _literal_choices(ctx))
        return f"got {value!r}; expected {ctx.get('expected')}{hint}"
    msg = error["msg"].removeprefix("Value error, ")
    msg = f"{msg[0].lower()}{msg[1:]}"
    return f"{msg}, got {value!r}" if value is not None and "got " not in msg else msg


def _literal_choices(ctx: dict[str, Any]) -> list[str]:
    return re.findall(r"'([^']*)'", str(ctx.get("expected", "")))


def _validation_problems(err: ValidationError, source: str, overrides: list[str]) -> list[str]:
    seen: set[str] = set()
    lines = []
    for error in err.errors():
        loc = tuple(error["loc"])
        # a list|"all" field reports once per union member: keep the first message per key
        key = _format_loc(loc)
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"{source}: {key}{_override_note(key, overrides)}: {_explain(error)}")
    return lines


def _override_note(key: str, overrides: list[str]) -> str:
    """Say which command-line override set a bad key, so the user looks in the right place."""
    for text in reversed(overrides):
        path = text.partition("=")[0].strip()
        if key == path or key.startswith(path + ".") or path.startswith(key + "."):
            return f" (from override {text})"
    return ""


METHOD_PARAMS: dict[str, type[BaseModel]] = {
    "baseline": BaselineParams,
    "dropout": DropoutParams,
    "addrop": AddropParams,
}


def load_spec(path: Path | str, overrides: list[str] | None = None) -> ExperimentSpec:
    """Read, merge and validate a spec. Raises SpecError listing every problem, one per line."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path), _cwd_relative_paths(overrides or []))
    _infer_variant_methods(raw)
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as err:
        # report unknown task names too, so that one round of fixes is enough
        problems = _validation_problems(err, str(path), overrides or [])
        raise SpecError(*problems, *_raw_task_problems(raw, str(path))) from None
    problems = _semantic_problems(spec, str(path))
    if problems:
        raise SpecError(*problems)
    return _resolve_data_paths(spec, path.parent.resolve())


_PATH_KEYS = re.compile(r"^data\.(glue_dir|cache_dir|custom_tasks\.[^.]+\.(train|dev|test))$")


def _cwd_relative_paths(overrides: list[str]) -> list[str]:
    """A relative data path typed on the command line means 'from here', not 'beside the spec'."""
    resolved = []
    for text in overrides:
        key, sep, value = text.partition("=")
        value = value.strip()
        if (
            sep
            and _PATH_KEYS.match(key.strip())
            and value
            and not Path(value).expanduser().is_absolute()
        ):
            text = f"{key}={Path.cwd() / value}"
        resolved.append(text)
    return resolved


def _resolve_data_paths(spec: ExperimentSpec, base_dir: Path) -> ExperimentSpec:
    """Relative data paths in a spec mean 'beside the spec file': make them absolute once here.

    Data paths are not part of a run's identity, so this never changes a run id.
    """
    data = spec.data
    update: dict[str, Any] = {}
    for key in ("glue_dir", "cache_dir"):
        value = getattr(data, key)
        if value is not None:
            update[key] = resolve_path(value, base_dir)
    if data.custom_tasks:
        update["custom_tasks"] = {
            name: task.model_copy(
                update={
                    split: resolve_path(getattr(task, split), base_dir)
                    for split in ("train", "dev", "test")
                    if getattr(task, split) is not None
                }
            )
            for name, task in data.custom_tasks.items()
        }
    if not update:
        return spec
    return spec.model_copy(update={"data": data.model_copy(update=update)})


def _task_problems(tasks: list[str], data: DataSpec | None, source: str) -> list[str]:
    from addrop_cli.errors import AddropError
    from addrop_cli.tasks import get_task

    problems = []
    for i, task in enumerate(tasks):
        try:
            get_task(task, data)
        except AddropError as err:
            problems.append(f"{source}: tasks[{i}]: {err}")
    return problems


def _raw_task_problems(raw: dict[str, Any], source: str) -> list[str]:
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        return []
    try:
        data = DataSpec.model_validate(raw.get("data") or {})
    except ValidationError:
        data = None
    return _task_problems(tasks, data, source)


def _semantic_problems(spec: ExperimentSpec, source: str) -> list[str]:
    """Checks that need more than one field: task names, the reference variant."""
    problems = _task_problems(spec.tasks, spec.data, source)
    if len({_canonical_task(spec, t) for t in spec.tasks}) != len(spec.tasks):
        problems.append(f"{source}: tasks: a task is listed twice; list each task once")
    if spec.reference is not None and spec.reference not in spec.methods:
        problems.append(
            f"{source}: reference: no variant named {spec.reference!r}"
            f"{_did_you_mean(spec.reference, spec.methods)} (variants: {', '.join(spec.methods)})"
        )
    if spec.sweep is not None and not problems:
        problems += _sweep_problems(spec, spec.sweep, source)
    return problems


SWEEPABLE_ROOTS = ("model", "data", "train", "methods")
"""Top-level spec keys a sweep may vary (seeds come from select_seeds / report_seeds)."""


def _sweep_problems(spec: ExperimentSpec, sweep: SweepSpec, source: str) -> list[str]:
    """Sweep checks that need the whole spec: paths, seed sets, every grid value in range."""
    problems: list[str] = []
    if not sweep.grid and not sweep.random:
        problems.append(
            f"{source}: sweep: nothing to search; give grid: {{path: [values]}} and/or "
            "random: {path: {distribution: ...}}"
        )
    for kind, paths in (("grid", sweep.grid), ("random", sweep.random)):
        for path in paths:
            problems += _sweep_path_problems(spec, f"sweep.{kind}.{path}", path, source)
    both = set(sweep.grid) & set(sweep.random)
    for path in sorted(both):
        problems.append(
            f"{source}: sweep.random.{path}: also in sweep.grid; search each path one way only"
        )
    select = sweep.select_seeds or spec.seeds
    if sweep.protocol == "two_stage" and not sweep.report_seeds:
        problems.append(
            f"{source}: sweep.report_seeds: the two_stage protocol reports the winner on other "
            "seeds; give report_seeds: [...] (disjoint from select_seeds), or protocol: paper"
        )
    if sweep.protocol == "paper" and sweep.report_seeds:
        problems.append(
            f"{source}: sweep.report_seeds: the paper protocol reports the selection runs "
            "themselves; remove report_seeds or use protocol: two_stage"
        )
    shared = sorted(set(select) & set(sweep.report_seeds or []))
    if shared:
        which = "select_seeds" if sweep.select_seeds else "seeds (the selection seeds)"
        problems.append(
            f"{source}: sweep.report_seeds: seeds {shared} are also in {which}; the two sets "
            "must be disjoint so that the reported runs played no part in choosing"
        )
    if problems:
        return problems
    grid = sweep.grid_values()
    for path, values in grid.items():
        for value in values:
            problems += _point_problems(spec, {path: value}, f"sweep.grid.{path}", source)
    for path, dist in sweep.random.items():
        for value in dist.values or [dist.low, dist.high]:
            problems += _point_problems(spec, {path: value}, f"sweep.random.{path}", source)
    return list(dict.fromkeys(problems))


def _sweep_path_problems(spec: ExperimentSpec, key: str, path: str, source: str) -> list[str]:
    parts = path.split(".")
    if parts[0] not in SWEEPABLE_ROOTS or len(parts) < 2:
        return [
            f"{source}: {key}: cannot sweep {path!r}; sweep a setting under "
            f"{', '.join(SWEEPABLE_ROOTS)} (e.g. methods.addrop.p, train.lr)"
        ]
    if parts[0] == "methods":
        if parts[1] not in spec.methods:
            return [
                f"{source}: {key}: no method variant {parts[1]!r}"
                f"{_did_you_mean(parts[1], spec.methods)} (variants: {', '.join(spec.methods)})"
            ]
        if len(parts) < 3:
            return [f"{source}: {key}: name a parameter, e.g. methods.{parts[1]}.p"]
    return []


def apply_point(spec: ExperimentSpec, point: dict[str, Any]) -> ExperimentSpec:
    """The spec with each ``path: value`` of a sweep point set, validated again.

    Raises :class:`pydantic.ValidationError` when a value is out of range; callers turn it
    into one-line problems naming the sweep path.
    """
    raw = spec.model_dump(mode="json")
    for path, value in point.items():
        set_path(raw, path.split("."), copy.deepcopy(value), f"sweep path {path!r}")
    return ExperimentSpec.model_validate(raw)


def _point_problems(
    spec: ExperimentSpec, point: dict[str, Any], key: str, source: str
) -> list[str]:
    """One line per problem a sweep point causes, named by the sweep path that set it."""
    try:
        apply_point(spec, point)
    except ValidationError as err:
        lines = []
        for line in _validation_problems(err, source, []):
            where, _, what = line.removeprefix(f"{source}: ").partition(": ")
            shown = ", ".join(f"{v!r}" for v in point.values())
            target = "" if key.endswith("." + where) else f" ({where})"
            fix = "" if "; " in what else "; change the sweep's values"
            lines.append(f"{source}: {key}: value {shown}{target}: {what}{fix}")
        return lines
    except SpecError as err:
        return [f"{source}: {key}: {p}" for p in err.problems]
    return []


def _canonical_task(spec: ExperimentSpec, name: str) -> str:
    from addrop_cli.errors import AddropError
    from addrop_cli.tasks import get_task

    try:
        return get_task(name, spec.data).name
    except AddropError:
        return name


# --------------------------------------------------------------------------------------------
# Expansion: one ExperimentSpec -> the run matrix
# --------------------------------------------------------------------------------------------

# Settings that change where or how fast a run goes, not its result: left out of the run id so
# that moving the GLUE folder or the cache, or running on more threads, never redoes a run.
_TRAIN_KEYS_NOT_IN_ID = {"device", "threads", "save_checkpoint", "eval_batch_size"}
_DATA_KEYS_NOT_IN_ID = {"source", "glue_dir", "cache_dir"}


class RunSpec(Frozen):
    """One training run: a task, a method variant and a seed, with everything it needs."""

    experiment: str
    task: str
    variant: str
    params: MethodParams
    seed: int
    model: ModelSpec
    train: TrainSpec
    data: DataSpec
    sweep: dict[str, Any] | None = None
    base_dir: Path = Path(".")
    """The spec file's folder: relative paths in the spec resolve against it."""

    def identity(self) -> dict[str, Any]:
        """What determines the run's result: hashed into its run id."""
        data = self.data.model_dump(mode="json", exclude=_DATA_KEYS_NOT_IN_ID)
        return {
            "task": self.task,
            "params": self.params.model_dump(mode="json"),
            "seed": self.seed,
            "model": self.model.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json", exclude=_TRAIN_KEYS_NOT_IN_ID),
            "data": data,
            "sweep": self.sweep,
        }

    @property
    def run_id(self) -> str:
        return config_hash(self.identity())

    @property
    def label(self) -> str:
        """``task/variant/seedN``, with the sweep point for sweep runs (``[p=0.1, q=0.3]``)."""
        base = f"{self.task}/{self.variant}/seed{self.seed}"
        point = (self.sweep or {}).get("point")
        if not point:
            return base
        shown = ", ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in point.items())
        return f"{base} [{shown}]"


def config_hash(obj: Any, length: int = 12) -> str:
    """A short, stable hash of a JSON-serialisable object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def expand(spec: ExperimentSpec, base_dir: Path | None = None) -> list[RunSpec]:
    """The run matrix: task x variant x seed, in that nesting order."""
    from addrop_cli.tasks import get_task

    base = (base_dir or Path(".")).resolve()
    runs = []
    for task in spec.tasks:
        canonical = get_task(task, spec.data).name
        for variant, params in spec.methods.items():
            for seed in spec.seeds:
                runs.append(
                    RunSpec(
                        experiment=spec.name,
                        task=canonical,
                        variant=variant,
                        params=params,
                        seed=seed,
                        model=spec.model,
                        train=spec.train,
                        data=spec.data,
                        base_dir=base,
                    )
                )
    return runs


def spec_to_yaml(spec: ExperimentSpec) -> str:
    """The resolved spec as YAML (defaults filled in), for printing and for the store."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def resolve_path(value: str | Path, base_dir: Path) -> Path:
    """A path from a spec: absolute or ``~`` as is, relative ones against the spec's folder."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def resolve_model_location(name_or_path: str, base_dir: Path) -> str:
    """Where to load a model from: ``package:NAME`` (a model shipped in a Python package),
    a folder (relative to the spec's folder, else the working directory), or a Hub id."""
    if name_or_path.startswith("package:"):
        return _packaged_model_dir(name_or_path.removeprefix("package:"))
    for candidate in (resolve_path(name_or_path, base_dir), Path(name_or_path).expanduser()):
        if candidate.is_dir():
            return str(candidate.resolve())
    return name_or_path


def _packaged_model_dir(package: str) -> str:
    import importlib

    from addrop_cli.errors import ModelError

    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelError(
            f"model package:{package}: the package {package!r} is not installed; "
            "install it (make install, or pip install 'addrop-cli[model]')"
        ) from None
    if hasattr(module, "get_model_path"):
        return str(module.get_model_path())
    folder = Path(module.__file__).parent / "model"
    if not folder.is_dir():
        raise ModelError(f"model package:{package}: the package holds no model/ folder")
    return str(folder)
