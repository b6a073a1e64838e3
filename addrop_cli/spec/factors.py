"""Factors: any setting varied as an axis of the run matrix (``data.train_size: [500, 1000]``).

Each factor value is applied to the spec like an override and validated; the points (the
product of every factor's values) are crossed with tasks, variants and seeds in
:func:`addrop_cli.spec.matrix.expand`, and each run records its point (``RunSpec.factors``).
"""

from __future__ import annotations

import itertools
from typing import Any

from addrop_cli.spec.explain import did_you_mean
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.spec.sweeps import point_problems

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
        elif len({repr(v) for v in values}) != len(values):
            repeated = sorted({repr(v) for v in values if values.count(v) > 1})
            problems.append(
                f"{source}: {key}: the value {', '.join(repeated)} is listed twice; "
                "list each value once"
            )
        else:
            for value in values:
                problems += point_problems(
                    spec, {path: value}, key, source, fix="change the factor's values"
                )
    return list(dict.fromkeys(problems))


def _missing_key(spec: ExperimentSpec, path: str) -> str:
    """Why ``path`` names no setting of the spec ("" when it does)."""
    node: Any = spec.model_dump(mode="json")
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "the spec"
            keys = list(node) if isinstance(node, dict) else []
            hint = did_you_mean(part, keys)
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
