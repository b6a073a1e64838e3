"""Loading a spec: YAML (strict) -> ``key=value`` overrides merged -> validated, frozen objects."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from addrop_cli.data.config import DataSpec
from addrop_cli.data.sources import resolve_path
from addrop_cli.errors import SpecError
from addrop_cli.methods.registry import METHOD_NAMES
from addrop_cli.registry import did_you_mean
from addrop_cli.spec.explain import validation_problems
from addrop_cli.spec.factors import factor_problems
from addrop_cli.spec.overrides import apply_overrides, read_yaml
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.spec.sweeps import sweep_problems


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


def load_spec(path: Path | str, overrides: list[str] | None = None) -> ExperimentSpec:
    """Read, merge and validate a spec. Raises SpecError listing every problem, one per line."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path), _cwd_relative_paths(overrides or []))
    _infer_variant_methods(raw)
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as err:
        # report unknown task names too, so that one round of fixes is enough
        problems = validation_problems(err, str(path), overrides or [])
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
    from addrop_cli.data.tasks import get_task
    from addrop_cli.errors import AddropError

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
    except ValidationError:  # reported already; its custom tasks are not unknown names
        data = None
        custom = (
            (raw.get("data") or {}).get("custom_tasks")
            if isinstance(raw.get("data"), dict)
            else None
        )
        tasks = [t for t in tasks if not (isinstance(custom, dict) and t in custom)]
    return _task_problems(tasks, data, source)


def _semantic_problems(spec: ExperimentSpec, source: str) -> list[str]:
    """Checks that need more than one field: task names, the reference variant."""
    problems = _task_problems(spec.tasks, spec.data, source)
    if len({_canonical_task(spec, t) for t in spec.tasks}) != len(spec.tasks):
        problems.append(f"{source}: tasks: a task is listed twice; list each task once")
    if spec.reference is not None and spec.reference not in spec.methods:
        hint = did_you_mean(spec.reference, spec.methods, before="; ")
        problems.append(
            f"{source}: reference: no variant named {spec.reference!r}"
            f"{hint} (variants: {', '.join(spec.methods)})"
        )
    problems += _identical_variants(spec, source) + _untrainable_tasks(spec, source)
    problems += _adapter_problems(spec, source)
    if spec.factors and not problems:
        problems += factor_problems(spec, source) or _factor_semantics(spec, source)
    if spec.sweep is not None and not problems:
        problems += sweep_problems(spec, spec.sweep, source)
    return problems


def _factor_semantics(spec: ExperimentSpec, source: str) -> list[str]:
    """The checks above at each factor value, so a value is refused as the same override is
    (a custom task's metrics or files a factor changes, a test-only task)."""
    from addrop_cli.spec.sweeps import apply_point

    problems = []
    for path, values in spec.factors.items():
        for value in values:
            at = apply_point(spec, {path: value})
            found = _task_problems(at.tasks, at.data, source) + _untrainable_tasks(at, source)
            for line in found + _identical_variants(at, source):
                what = line.removeprefix(f"{source}: ")
                problems.append(f"{source}: factors.{path}={value!r}: {what}")
    return list(dict.fromkeys(problems))


def _identical_variants(spec: ExperimentSpec, source: str) -> list[str]:
    """Two variants that compute the same thing are the same runs, paid for twice (or one would
    vanish from every report): equal parameters, or parameters that differ only in settings
    without effect (:meth:`~addrop_cli.methods.config.MethodConfig.effective`). A variant a
    sweep path names is told apart by its sweep point."""
    swept = (
        {path.split(".")[1] for path in [*spec.sweep.grid, *spec.sweep.random] if "." in path}
        if spec.sweep is not None
        else set()
    )
    first: dict[str, tuple[str, str]] = {}
    problems = []
    for name, params in spec.methods.items():
        if name in swept:
            continue
        train = spec.train_of(name).model_dump(mode="json")  # a variant's own train settings
        raw = json.dumps([params.model_dump(mode="json"), train], sort_keys=True)
        key = json.dumps([params.effective(), train], sort_keys=True, default=str)
        if key not in first:
            first[key] = (name, raw)
            continue
        other, other_raw = first[key]
        same = "identical parameters" if raw == other_raw else "parameters identical in effect"
        problems.append(
            f"{source}: methods: variants {other!r} and {name!r} have {same}, so they would be "
            "the same runs; remove one or make them differ"
        )
    return problems


def _adapter_problems(spec: ExperimentSpec, source: str) -> list[str]:
    """A variant whose method cannot train with its ``train.adapter``, or whose adapter cannot be
    saved or trained as asked: one line each (docs/adapters.md says why)."""
    problems = []
    for name, params in spec.methods.items():
        train = spec.train_of(name)
        if train.adapter is None:
            continue
        where = f"{source}: methods.{name}"
        why = params.adapter_problem()
        if why:
            problems.append(
                f"{where}: {params.method} cannot train with train.adapter: {why}; use another "
                f"method or give this variant methods.{name}.train.adapter: null"
            )
        if train.reinit_layers:
            problems.append(
                f"{where}: train.reinit_layers with train.adapter would leave the re-drawn layers "
                "random and frozen; set train.reinit_layers: 0 or train.adapter: null"
            )
        if train.save_checkpoint and not spec.model.pretrained and not train.adapter.merge:
            problems.append(
                f"{where}: an adapter checkpoint names its base model, and a random one "
                "(model.pretrained: false) cannot be loaded again; set train.adapter.merge: true"
            )
    return problems


def inert_settings(spec: ExperimentSpec, source: str) -> list[str]:
    """Warnings, one line each: a setting a variant gives that its method ignores."""
    lines = []
    for name, params in spec.methods.items():
        for key, why in params.inert().items():
            if key in params.model_fields_set:
                lines.append(f"{source}: methods.{name}.{key}: has no effect, {why}; remove it")
    return lines


def _untrainable_tasks(spec: ExperimentSpec, source: str) -> list[str]:
    from addrop_cli.data.tasks import get_task
    from addrop_cli.errors import AddropError

    problems = []
    for i, name in enumerate(spec.tasks):
        try:
            task = get_task(name, spec.data)
        except AddropError:
            continue  # reported by _task_problems
        if task.train_split is None:
            helper = f" (`addrop predict` writes it with the {task.eval_with} model)"
            problems.append(
                f"{source}: tasks[{i}]: {name} is a test-only set with no training data"
                f"{helper if task.eval_with else ''}; remove it from tasks"
            )
    return problems


def _canonical_task(spec: ExperimentSpec, name: str) -> str:
    from addrop_cli.data.tasks import get_task
    from addrop_cli.errors import AddropError

    try:
        return get_task(name, spec.data).name
    except AddropError:
        return name


def spec_to_yaml(spec: ExperimentSpec) -> str:
    """The resolved spec as YAML (defaults filled in), for printing and for the store."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
