"""Reading spec YAML strictly (duplicate keys refused) and merging ``key=value`` overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from addrop_cli.errors import SpecError


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1}); keep one of them",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates
)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a spec file into a mapping, turning every YAML problem into one SpecError line."""
    if not path.exists():
        raise SpecError(f"{path}: file not found; check the path (run from the project folder?)")
    if path.is_dir():
        raise SpecError(f"{path}: is a folder; give the path of a YAML spec file")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        what = " ".join(str(s) for s in (e.context, e.problem) if s)
        fix = "" if "; " in what else "; fix the syntax there"
        raise SpecError(f"{path}: {where}: malformed YAML: {what}{fix}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: malformed YAML: {e}; fix the file") from None
    if raw is None:
        raise SpecError(f"{path}: the file is empty; write a spec (see experiments/smoke.yaml)")
    if not isinstance(raw, dict):
        raise SpecError(
            f"{path}: the top level must be a mapping of keys (name:, model:, tasks:, ...), "
            f"got a {type(raw).__name__}; see experiments/smoke.yaml"
        )
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-parsed value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise SpecError(
            f"override {text!r}: expected key=value with a dotted key path, "
            "e.g. train.epochs=1 or methods.addrop.p=0.5"
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value  # not YAML: keep the raw string and let validation judge it
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Merge ``key=value`` overrides into a copy of ``raw`` (command line beats YAML).

    Missing mappings along the path are created, so ``methods.new.method=addrop`` adds a variant;
    whether the resulting keys are allowed is for validation to say.
    """
    merged = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        set_path(merged, path, value, f"override {text!r}")
    return merged


def set_path(raw: dict[str, Any], path: list[str], value: Any, what: str) -> None:
    """Set ``raw[a][b][c] = value`` for the key path ``a.b.c`` (list items by index), in place.

    ``what`` names the setting in the error raised when the path runs into a non-mapping.
    """
    node: Any = raw
    for i, part in enumerate(path):
        where = ".".join(path[: i + 1])
        last = i == len(path) - 1
        if isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            parent = ".".join(path[:i])
            raise SpecError(
                f"{what}: {parent} is a {type(node).__name__} and has no "
                f"key {part!r}; check the key path ({where})"
            )
