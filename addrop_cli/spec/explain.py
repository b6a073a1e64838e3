"""Pydantic validation errors -> one line each: key path, what is wrong, how to fix it."""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import (
    BaseModel,
    ValidationError,
)

from addrop_cli.methods.registry import METHOD_NAMES, METHODS
from addrop_cli.registry import did_you_mean
from addrop_cli.spec.schema import ExperimentSpec


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model class that owns the mapping at ``loc`` (for listing its allowed keys)."""
    model: Any = ExperimentSpec
    i = 0
    while i < len(loc):
        field = model.model_fields.get(loc[i]) if isinstance(model, type) else None
        if field is None:
            return None
        annotation = field.annotation
        if loc[i] == "methods":
            # methods.<variant>.<method tag>: the tag picks the params model
            if i + 2 < len(loc):
                info = METHODS.get(loc[i + 2])
                model = info.params if info else None
                i += 3
                continue
            return None
        args = [a for a in get_args(annotation) if isinstance(a, type)] or [annotation]
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return None
        i += 1
    return model


def _interval(loc: tuple[Any, ...]) -> str | None:
    """The field's bounds as an interval, "(0, 1]" or "[0, 1)"; None unless it has both ends."""
    owner = _model_at(loc[:-1])
    field = owner.model_fields.get(loc[-1]) if owner else None
    ends = {k: getattr(m, k) for m in (field.metadata if field else ()) for k in
            ("gt", "ge", "lt", "le") if getattr(m, k, None) is not None}  # fmt: skip
    low = f"[{ends['ge']:g}" if "ge" in ends else f"({ends['gt']:g}" if "gt" in ends else None
    high = f"{ends['le']:g}]" if "le" in ends else f"{ends['lt']:g})" if "lt" in ends else None
    return f"{low}, {high}" if low and high else None


def _format_loc(loc: tuple[Any, ...]) -> str:
    # Drop the discriminator tag pydantic puts after a variant: methods.a.addrop.p -> methods.a.p
    parts = list(loc)
    if len(parts) >= 3 and parts[0] == "methods" and parts[2] in METHOD_NAMES:
        del parts[2]
    # and the union members it names (list[constrained-int], literal['all'], function-after[..])
    parts = [p for p in parts if not (isinstance(p, str) and ("[" in p or "(" in p))]
    return ".".join(str(p) for p in parts) or "(top level)"


_EXPECTED = {
    "list_type": "a list",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "text",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _explain_union(errors: list[dict[str, Any]]) -> str:
    """Several errors at one key: each member of a union refused the value; say what fits."""
    wanted = []
    for error in errors:
        if error["type"] == "literal_error":
            wanted.append(str((error.get("ctx") or {}).get("expected")))
        else:
            wanted.append(_EXPECTED.get(error["type"]) or _explain(error))
    return f"expected {' or '.join(dict.fromkeys(wanted))}, got {errors[0].get('input')!r}"


def _not_a_whole_number(value: Any) -> str:
    """``1e3`` is text in YAML 1.1 (no dot): name the number it meant."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    if number != number or number in (float("inf"), float("-inf")):
        return f"{value!r} is not a finite number"
    if number.is_integer():
        return f"YAML reads {value!r} as text, not a number; write {int(number)}"
    return f"expected a whole number, got {value!r}"


def _explain(error: dict[str, Any]) -> str:
    """One pydantic error -> 'what is wrong; how to fix it'."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        owner = _model_at(loc[:-1])
        allowed = list(owner.model_fields) if owner else []
        hint = did_you_mean(loc[-1], allowed, before="; ") or (
            f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        )
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing; add it"
    if kind == "union_tag_invalid":
        hint = did_you_mean(ctx.get("tag"), METHOD_NAMES, before="; ")
        return f"unknown method {ctx.get('tag')!r}{hint} (methods: {', '.join(METHOD_NAMES)})"
    if kind == "union_tag_not_found":
        return f"say which method this variant runs: method: {' | '.join(METHOD_NAMES)}"
    bounds = {
        "greater_than": "> {gt}",
        "greater_than_equal": ">= {ge}",
        "less_than": "< {lt}",
        "less_than_equal": "<= {le}",
    }
    if kind in bounds:
        if loc[-1] in ("p", "q") and _interval(loc):  # probabilities: both ends at once
            return f"must be in {_interval(loc)}, got {value}"
        return f"must be {bounds[kind].format(**ctx)}, got {value}"
    if kind == "too_short":
        return "must not be empty; give at least one item"
    if kind == "string_too_short":
        return "must not be empty; give a value or leave the key out"
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not allowed: use letters, digits, '_', '-' and '.'"
    if kind == "literal_error":
        hint = did_you_mean(value, _literal_choices(ctx), before="; ")
        return f"got {value!r}; expected {ctx.get('expected')}{hint}"
    if kind == "list_type" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return f"expected a list, got {value!r}; write [{value}]"
    if kind == "int_parsing" and isinstance(value, str) and _not_a_whole_number(value):
        return _not_a_whole_number(value)
    msg = error["msg"].removeprefix("Value error, ")
    msg = f"{msg[0].lower()}{msg[1:]}"
    scalar = value is not None and not isinstance(value, (dict, list))
    return f"{msg}, got {value!r}" if scalar and "got " not in msg else msg


def _literal_choices(ctx: dict[str, Any]) -> list[str]:
    return re.findall(r"'([^']*)'", str(ctx.get("expected", "")))


def validation_problems(err: ValidationError, source: str, overrides: list[str]) -> list[str]:
    by_key: dict[str, list[dict[str, Any]]] = {}
    for error in err.errors():
        by_key.setdefault(_format_loc(tuple(error["loc"])), []).append(error)
    lines = []
    for key, errors in by_key.items():
        # a list|"all" field reports once per union member: one line saying what fits
        what = _explain(errors[0]) if len(errors) == 1 else _explain_union(errors)
        if key == "(top level)" and re.match(r"[A-Za-z_][\w.]*: ", what):
            key, what = what.split(": ", 1)  # a spec-wide check that names its own key
        lines.append(f"{source}: {key}{_override_note(key, overrides)}: {what}")
    return lines


def _override_note(key: str, overrides: list[str]) -> str:
    """Say which command-line override set a bad key, so the user looks in the right place."""
    for text in reversed(overrides):
        path = text.partition("=")[0].strip()
        if key == path or key.startswith(path + ".") or path.startswith(key + "."):
            return f" (from override {text})"
    return ""
