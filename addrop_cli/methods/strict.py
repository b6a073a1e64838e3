"""Numbers in settings are numbers: YAML's ``true`` is not 1, no integer is astronomic, and
a yes/no setting is ``true`` or ``false`` (not 1 or 0).

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


def _wants_bool(annotation: Any) -> bool:
    return bool in _kinds(annotation) and not _kinds(annotation) - {bool, type(None)}


def plain_number(annotation: Any, value: Any) -> Any:
    """``value`` unchanged, or ValueError when a number field gets a bool or a huge integer, or
    a yes/no field gets anything but a bool (pydantic would read 1, 0 or "yes" as one)."""
    if _wants_bool(annotation) and value is not None and not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    if not _wants_number(annotation):
        return value
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, bool):
            raise ValueError(f"expected a number, got {str(item).lower()} (a yes/no value)")
        if isinstance(item, int) and abs(item) > MAX_INT:
            raise ValueError(f"{item} is too large a number")
    return value
