"""Checks that need files, run before any training: data present and well-formed, model loadable,
layers valid.

`addrop validate` prints these; `addrop run` refuses to start while any remain, so a typo in a
path or a broken row fails in seconds, with exit code 2, rather than as a failed run after an
hour of training.
"""

from __future__ import annotations

from pathlib import Path

from addrop_cli.data.hub import offline_problem
from addrop_cli.data.sources import check_data, data_source, load_examples
from addrop_cli.data.subsets import split_train
from addrop_cli.data.tasks import get_task
from addrop_cli.errors import AddropError
from addrop_cli.execution.backends.base import backend_type
from addrop_cli.models.config import ModelSpec
from addrop_cli.models.location import located
from addrop_cli.spec.factors import factor_points
from addrop_cli.spec.schema import ExperimentSpec, TrainSpec
from addrop_cli.spec.sweeps import apply_point


def preflight(
    spec: ExperimentSpec,
    base_dir: Path,
    source: str | None = None,
    *,
    hub: bool = True,
    notes: list[str] | None = None,
) -> list[str]:
    """Every problem found, one line each, without repeats; [] when the experiment can start.

    ``source`` (the spec file) prefixes problems that belong to a spec key. With ``hub=False``
    a Hub model that is not in the local cache is not fetched: a line saying so goes to
    ``notes`` instead (offline validation stays fast; `addrop run` fetches it anyway).
    """
    problems = _device_problems(spec, source)
    backend = backend_type(spec.executor.backend)  # settings the back-end cannot honour
    problems += backend.spec_problems(spec, source or "spec")
    problems += _data_problems(spec, base_dir)
    problems += _model_problems(spec, base_dir, source, hub, notes)
    problems += _factor_problems(spec, base_dir, source, hub, notes)
    return list(dict.fromkeys(problems))


def _factor_problems(
    spec: ExperimentSpec, base_dir: Path, source: str | None, hub: bool, notes: list[str] | None
) -> list[str]:
    """The data and model checks again at each factor point that changes what they read, so a
    factor value is checked as the same setting given as an override is (a re-init depth or a
    model path a run would fail on, a train_size above the data: its line)."""

    checked = {("data", spec.data.model_dump_json()), ("model", _model_key(spec))}
    problems: list[str] = []
    for point in factor_points(spec) if spec.factors else []:
        at = apply_point(spec, point)
        found: list[str] = []
        if ("data", at.data.model_dump_json()) not in checked:
            checked.add(("data", at.data.model_dump_json()))
            found += _data_problems(at, base_dir)
        if ("model", _model_key(at)) not in checked:
            checked.add(("model", _model_key(at)))
            found += _model_problems(at, base_dir, source, hub, notes)
        where = ", ".join(f"factors.{path}={value!r}" for path, value in point.items())
        for line in found:
            what = line.removeprefix(f"{source}: ") if source else line
            problems.append(f"{source or 'spec'}: {where}: {what}")
    return problems


def _model_key(spec: ExperimentSpec) -> str:
    """What the model checks read: the model, the training settings, the variants' layers."""
    return spec.model_dump_json(include={"model", "train", "variant_train", "methods"})


def _device_problems(spec: ExperimentSpec, source: str | None) -> list[str]:
    """An explicit device this machine lacks (local runs only: Slurm jobs run elsewhere)."""
    wanted = spec.train.device
    if wanted in ("auto", "cpu") or spec.executor.backend != "local":
        return []
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    import torch

    if wanted == "cuda" and torch.cuda.is_available():
        return []
    mps = getattr(torch.backends, "mps", None)
    if wanted == "mps" and mps is not None and mps.is_available():
        return []
    what = "no CUDA GPU is visible" if wanted == "cuda" else "Apple MPS is not available"
    return [
        f"{source or 'spec'}: train.device: {wanted}, but {what} on this machine; "
        "use --device auto (or cpu), or run where there is one (--backend slurm)"
    ]


def _data_problems(spec: ExperimentSpec, base_dir: Path) -> list[str]:

    problems: list[str] = []
    for name in spec.tasks:
        task = get_task(name, spec.data)
        found = check_data(task, spec.data, base_dir=base_dir)
        problems += found
        if not found and data_source(task, spec.data, base_dir) == "hub":
            # reading the Hub here would download: its rows are checked when loaded
            problems += [p for p in [offline_problem(task)] if p]
            continue
        if found:
            continue
        # Parse every row now: a bad label or a short row is found before any training.
        for split in (task.train_split, *task.dev_splits):
            if split is None:
                continue
            try:
                examples = load_examples(task, split, spec.data, base_dir)
                if split == task.train_split:  # a held-out part as large as train
                    split_train(
                        examples, spec.data, 0, regression=task.is_regression, task_name=name
                    )
            except AddropError as err:
                problems += err.problems
    return problems


def _model_problems(
    spec: ExperimentSpec, base_dir: Path, source: str | None, hub: bool, notes: list[str] | None
) -> list[str]:
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.models.loading import check_model, is_cached_or_local

    try:
        model = located(spec.model, base_dir)
    except AddropError as err:
        return err.problems
    if not hub and not is_cached_or_local(model):
        if notes is not None:
            notes.append(
                f"{source or 'spec'}: model.name_or_path: {model.name_or_path} is a Hub id not in "
                "the local cache, so its type and layers were not checked (addrop validate --hub "
                "fetches its config; addrop run downloads it)"
            )
        return []
    problems = check_model(model, None) + _length_problems(model, spec, source)
    problems += _depth_problems(model, spec, source)
    for variant, params in spec.methods.items():
        layers = params.attention_layers()
        if layers is None:
            continue
        for line in check_model(model, layers):
            if line in problems:
                continue  # a model-wide problem, already reported once
            key = f"methods.{variant}."
            problems.append(f"{source}: {key}{line}" if source else f"{key}{line}")
    return problems


def _trains(spec: ExperimentSpec) -> dict[str, TrainSpec]:
    """Spec key -> the training settings found there: ``train`` and each variant's own."""
    return {"train": spec.train} | {
        f"methods.{v}.train": spec.train_of(v) for v in spec.variant_train
    }


def _length_problems(model: ModelSpec, spec: ExperimentSpec, source: str | None) -> list[str]:
    """train.max_length beyond the model's position embeddings: a long example would crash."""
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.models.families import max_tokens
    from addrop_cli.models.loading import load_config

    try:
        config = load_config(model)
    except AddropError:
        return []  # check_model reports it
    positions = max_tokens(config)
    if positions is None:
        return []
    where = source or "spec"
    for key, train in _trains(spec).items():
        length, multiple = train.max_length, train.pad_to_multiple_of
        if length > positions:
            return [
                f"{where}: {key}.max_length: {length} tokens, but {model.name_or_path} has "
                f"{positions} positions; use {key}.max_length={positions} or less"
            ]
        widest = -(-length // multiple) * multiple if multiple else length
        if widest > positions:
            return [
                f"{where}: {key}.pad_to_multiple_of: {multiple} pads the longest batch "
                f"({key}.max_length {length}) to {widest} tokens, but {model.name_or_path} has "
                f"{positions} positions; use a multiple that divides {positions} (such as 8), "
                f"or a smaller {key}.max_length"
            ]
    return []


def _depth_problems(model: ModelSpec, spec: ExperimentSpec, source: str | None) -> list[str]:
    """train.reinit_layers beyond the model's layers: there is nothing above layer 0 to re-draw."""
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.models.layerwise import layer_count
    from addrop_cli.models.loading import load_config

    try:
        depth = layer_count(load_config(model))
    except AddropError:
        return []  # check_model reports it
    return [
        f"{source or 'spec'}: {key}.reinit_layers: {train.reinit_layers}, but "
        f"{model.name_or_path} has {depth} layers; use {key}.reinit_layers={depth} or less"
        for key, train in _trains(spec).items()
        if train.reinit_layers > depth
    ]
