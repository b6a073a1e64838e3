"""Numbers in settings are numbers: YAML's ``true`` is not 1, and no integer is astronomic.

pydantic's lax mode reads ``true`` as 1 for an int or float field (``seeds: [true]`` would run
seed 1): every settings model (method parameters, the spec) calls :func:`plain_number` on each
field before validating it.
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

MAX_INT = 2**63 - 1
"""Larger integers overflow torch and numpy before anything useful happens."""


def _kinds(annotation: Any) -> set[type]:
    """Every plain type an annotation can take (through Annotated, unions, lists, dicts)."""
    if isinstance(annotation, type) and get_origin(annotation) is None:
        return {annotation}
    found: set[type] = set()
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, list, tuple, set, dict) or origin is not None:
        for arg in get_args(annotation):
            found |= _kinds(arg)
    return found


def _wants_number(annotation: Any) -> bool:
    kinds = _kinds(annotation)
    return bool(kinds & {int, float}) and bool not in kinds and object not in kinds


def plain_number(annotation: Any, value: Any) -> Any:
    """``value`` unchanged, or ValueError when a number field gets a bool or a huge integer."""
    if not _wants_number(annotation):
        return value
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, bool):
            raise ValueError(f"expected a number, got {str(item).lower()} (a yes/no value)")
        if isinstance(item, int) and abs(item) > MAX_INT:
            raise ValueError(f"{item} is too large a number")
    return value
