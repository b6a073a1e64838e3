"""Factors: any setting varied as an axis of the run matrix (``data.train_size: [500, 1000]``).

Each factor value is applied to the spec like an override and validated; the points (the
product of every factor's values) are crossed with tasks, variants and seeds in
:func:`addrop_cli.spec.matrix.expand`, and each run records its point (``RunSpec.factors``).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from addrop_cli.registry import did_you_mean
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.spec.sweeps import apply_point, point_problems

FACTOR_ROOTS = ("model", "data", "train")
"""Top-level spec keys a factor may vary."""
_OWN_AXES = {"tasks": "tasks:", "seeds": "seeds:", "methods": "methods: (one variant per value)"}


def factor_problems(spec: ExperimentSpec, source: str) -> list[str]:
    """One line per bad factor: a path outside model/data/train or one that does not exist, an
    empty or repeating value list, a value the setting refuses."""
    problems: list[str] = []
    for path, values in spec.factors.items():
        key = f"factors.{path}"
        root = path.split(".")[0]
        if root in _OWN_AXES:
            problems.append(
                f"{source}: {key}: {root} are already an axis of the run matrix; list the "
                f"values under {_OWN_AXES[root]} instead of as a factor"
            )
        elif root not in FACTOR_ROOTS or "." not in path:
            problems.append(
                f"{source}: {key}: cannot vary {path!r}; a factor sets one setting under "
                f"{', '.join(FACTOR_ROOTS)} (e.g. data.train_size, train.lr)"
            )
        elif _missing_key(spec, path):
            problems.append(f"{source}: {key}: {_missing_key(spec, path)}")
        elif not values:
            problems.append(f"{source}: {key}: no values; give at least one, e.g. [500, 1000]")
        else:
            found = [
                line
                for value in values
                for line in point_problems(
                    spec, {path: value}, key, source, fix="change the factor's values"
                )
            ]
            repeated = "" if found else _repeated(spec, path, values)
            if repeated:
                found.append(f"{source}: {key}: {repeated}; list each value once")
            problems += found
    return list(dict.fromkeys(problems))


def _canonical(value: Any) -> Any:
    """A validated setting's value with 100.0 read as 100 (a number setting may accept both);
    true stays apart from 1."""
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def _repeated(spec: ExperimentSpec, path: str, values: list[Any]) -> str:
    """Why ``values`` repeat a value ("" when each is listed once): two values the setting
    reads as one (100, 100.0 and "1.0e2" for a number) would be one study run twice."""
    first: dict[str, Any] = {}
    for value in values:
        node: Any = apply_point(spec, {path: value}).model_dump(mode="json")
        for part in path.split("."):
            node = node[part]
        key = json.dumps(_canonical(node), sort_keys=True, default=repr)
        if key not in first:
            first[key] = value
        elif repr(first[key]) == repr(value):
            return f"the value {value!r} is listed twice"
        else:
            return f"the values {first[key]!r} and {value!r} are the same setting, listed twice"
    return ""


def _missing_key(spec: ExperimentSpec, path: str) -> str:
    """Why ``path`` names no setting of the spec ("" when it does)."""
    node: Any = spec.model_dump(mode="json")
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "the spec"
            keys = list(node) if isinstance(node, dict) else []
            hint = did_you_mean(part, keys, before="; ")
            if hint:
                return f"{where} has no setting {part!r}{hint}"
            listed = f" (its settings: {', '.join(keys)})" if keys else ""
            return f"{where} has no setting {part!r}{listed}; vary a setting the spec has"
        node = node[part]
    return ""


def factor_points(spec: ExperimentSpec) -> list[dict[str, Any]]:
    """Every combination of the factors' values, in spec order ([{}] without factors)."""
    paths = list(spec.factors)
    return [
        dict(zip(paths, values, strict=True))
        for values in itertools.product(*(spec.factors[p] for p in paths))
    ]
