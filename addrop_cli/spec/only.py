"""``addrop run --only KEY=V1,V2``: run part of the run matrix without changing the spec.

The spec (its version hash, the spec.yaml the store records, every run's id) stays the full
one; only the runs whose task, variant, seed or factor value matches are handed on. Each
``--only`` names one key; several values of a key are alternatives, several keys must all
match (``--only seed=1 --only data.train_size=500,1000``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from addrop_cli.errors import AddropError, SpecError
from addrop_cli.registry import did_you_mean
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.spec.overrides import load_yaml_text
from addrop_cli.spec.schema import ExperimentSpec

AXES = ("task", "variant", "seed")
"""The run matrix's own axes; a factor's spec path (``data.train_size``) is a key too."""


def select_runs(
    spec: ExperimentSpec, runs: Sequence[RunSpec], only: Sequence[str], source: str
) -> list[RunSpec]:
    """The runs of ``runs`` that every ``--only KEY=VALUES`` matches (all of them without any).

    Raises :class:`SpecError` (one line) for an unknown key or a value the spec does not list.
    """
    wanted: dict[str, list[Any]] = {}
    for text in only:
        key, values = _parse(spec, text, source)
        wanted.setdefault(key, []).extend(values)
    return [run for run in runs if all(_matches(run, k, v) for k, v in wanted.items())]


def _parse(spec: ExperimentSpec, text: str, source: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` -> (key, values), each value checked against what the spec lists."""
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("factors.")
    keys = [*AXES, *spec.factors]
    if not sep or not key or not raw.strip():
        raise SpecError(
            f"--only {text!r}: expected KEY=V1,V2 with KEY one of {', '.join(keys)}; "
            "e.g. --only seed=1 or --only data.train_size=500,1000"
        )
    if key not in keys:
        raise SpecError(
            f"--only {text}: {source} has no axis {key!r}{did_you_mean(key, keys, before='; ')}; "
            f"--only takes {', '.join(keys)}"
        )
    try:
        values = load_yaml_text(f"[{raw}]")
    except (yaml.YAMLError, ValueError):
        raise SpecError(
            f"--only {text}: cannot read the values {raw!r}; separate them with commas, "
            "e.g. data.train_size=500,1000"
        ) from None
    planned = _planned(spec, key)
    for value in values:
        if not any(_same(_canonical_task(spec, value) if key == "task" else value, p)
                   for p in planned):  # fmt: skip
            listed = ", ".join(map(str, planned))
            raise SpecError(
                f"--only {text}: {source} does not run {key} {value!r} (its {key} values: "
                f"{listed}); pick from those, or add it to the spec"
            )
    if key == "task":
        values = [_canonical_task(spec, v) for v in values]
    return key, values


def _planned(spec: ExperimentSpec, key: str) -> list[Any]:
    if key == "task":
        return [_canonical_task(spec, t) for t in spec.tasks]
    if key == "variant":
        return list(spec.methods)
    if key == "seed":
        return list(spec.seeds)
    return list(spec.factors[key])


def _canonical_task(spec: ExperimentSpec, name: Any) -> Any:
    """A task's registry name (``SST-2`` -> ``sst2``), as run ids hold it; else as given."""
    from addrop_cli.data.tasks import get_task

    try:
        return get_task(str(name), spec.data).name
    except AddropError:
        return name


def _value(run: RunSpec, key: str) -> Any:
    if key in AXES:
        return getattr(run, key)
    return (run.factors or {}).get(key)


def _matches(run: RunSpec, key: str, values: list[Any]) -> bool:
    return any(_same(_value(run, key), v) for v in values)


def _same(a: Any, b: Any) -> bool:
    """Equal as the spec means it: 500 and 500.0 are one value, true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b
