"""Checks that need files, run before any training: data present and well-formed, model loadable,
layers valid.

`addrop validate` prints these; `addrop run` refuses to start while any remain, so a typo in a
path or a broken row fails in seconds, with exit code 2, rather than as a failed run after an
hour of training.
"""

from __future__ import annotations

from pathlib import Path

from addrop_cli.methods.config import AddropParams
from addrop_cli.models.location import resolve_model_location
from addrop_cli.spec.schema import ExperimentSpec


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
    problems = _data_problems(spec, base_dir) + _model_problems(spec, base_dir, source, hub, notes)
    return list(dict.fromkeys(problems))


def _data_problems(spec: ExperimentSpec, base_dir: Path) -> list[str]:
    from addrop_cli.data.sources import check_data, data_source, load_examples
    from addrop_cli.data.tasks import get_task
    from addrop_cli.errors import AddropError

    problems: list[str] = []
    for name in spec.tasks:
        task = get_task(name, spec.data)
        found = check_data(task, spec.data, base_dir=base_dir)
        problems += found
        if found or data_source(task, spec.data, base_dir) == "hub":
            continue  # reading the Hub here would download: its rows are checked when loaded
        # Parse every row now: a bad label or a short row is found before any training.
        for split in (task.train_split, *task.dev_splits):
            if split is None:
                continue
            try:
                load_examples(task, split, spec.data, base_dir)
            except AddropError as err:
                problems += err.problems
    return problems


def _model_problems(
    spec: ExperimentSpec, base_dir: Path, source: str | None, hub: bool, notes: list[str] | None
) -> list[str]:
    from addrop_cli.errors import AddropError
    from addrop_cli.models.loading import check_model, is_cached_or_local

    try:
        location = resolve_model_location(spec.model.name_or_path, base_dir)
    except AddropError as err:
        return err.problems
    model = spec.model.model_copy(update={"name_or_path": location})
    if not hub and not is_cached_or_local(model):
        if notes is not None:
            notes.append(
                f"{source or 'spec'}: model.name_or_path: {location} is a Hub id not in the local "
                "cache, so its type and layers were not checked (addrop validate --hub fetches "
                "its config; addrop run downloads it)"
            )
        return []
    problems = check_model(model, None)
    for variant, params in spec.methods.items():
        if not isinstance(params, AddropParams):
            continue
        for line in check_model(model, params.layers):
            if line in problems:
                continue  # a model-wide problem, already reported once
            key = f"methods.{variant}."
            problems.append(f"{source}: {key}{line}" if source else f"{key}{line}")
    return problems
