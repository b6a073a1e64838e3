"""Checks that need files, run before any training: data present, model loadable, layers valid.

`addrop validate` prints these; `addrop run` refuses to start while any remain, so a typo in a
path fails in a second rather than after an hour of training.
"""

from __future__ import annotations

from pathlib import Path

from addrop_cli.spec import AddropParams, ExperimentSpec, resolve_model_location


def preflight(spec: ExperimentSpec, base_dir: Path) -> list[str]:
    """Every problem found, one line each; [] when the experiment can start."""
    from addrop_cli.data import check_data
    from addrop_cli.errors import AddropError
    from addrop_cli.modeling import check_model
    from addrop_cli.tasks import get_task

    problems: list[str] = []
    for name in spec.tasks:
        task = get_task(name, spec.data)
        problems += check_data(task, spec.data, base_dir=base_dir)
    try:
        location = resolve_model_location(spec.model.name_or_path, base_dir)
    except AddropError as err:
        return problems + err.problems
    model = spec.model.model_copy(update={"name_or_path": location})
    layer_sets = [p.layers for p in spec.methods.values() if isinstance(p, AddropParams)]
    checked: set[str] = set()
    for layers in layer_sets or [None]:
        for line in check_model(model, layers):
            if line not in checked:
                checked.add(line)
                problems.append(line)
    return problems
