"""The base of every settings model (the spec's sections, data, model and method settings).

Numbers in settings are numbers: YAML's ``true`` is not 1, and no integer is astronomic.
pydantic's lax mode reads ``true`` as 1 for an int or float field (``seeds: [true]`` would run
seed 1): every settings model calls :func:`plain_number` on each field before validating it.

It sits at the bottom of the layers (beside ``errors``), so that each layer can define the
settings it takes (``data/config.py``, ``models/config.py``, ``methods/config.py``) without
importing the spec.
"""

from __future__ import annotations

import re
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

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


class Frozen(BaseModel):
    """Base for every spec model: immutable, unknown keys rejected, numbers finite and plain."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        return plain_number(cls.model_fields[info.field_name].annotation, v)


VARIANT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
"""A method variant's or custom task's name: it names report columns, run labels
(task/variant/seed) and cache files, so no path separator, blank or control character."""


def check_names(value: Any, what: str) -> Any:
    """``value`` unchanged, or ValueError naming the first key that is no :data:`VARIANT_NAME`."""
    for name in value if isinstance(value, dict) else ():
        if not isinstance(name, str) or not re.match(VARIANT_NAME, name) or len(name) > 100:
            raise ValueError(
                f"{what} name {str(name)[:120]!r} is not allowed: start with a letter or digit, "
                "then up to 100 letters, digits, '_', '-', '.', '+'"
            )
    return value
