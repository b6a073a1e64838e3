"""Reading spec YAML strictly (duplicate keys refused) and merging ``key=value`` overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from addrop_cli.errors import SpecError, one_line

MAX_DEPTH = 64
"""Deepest nesting a spec may have (a spec is about 4 levels deep)."""
MAX_VALUES = 100_000
"""Most values a spec may hold once YAML aliases are expanded ("billion laughs" stops here)."""
MAX_BYTES = 1_000_000
"""Largest spec file (a spec is a few kilobytes)."""


_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep; a spec is a few levels deep"


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (PyYAML silently keeps the last one),
    keys that are not plain values, and documents nested deeper than :data:`MAX_DEPTH`."""

    _depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # the scanner's cost grows with the square of the [ and { nesting: stop it early
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, _TOO_DEEP, self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    _TOO_DEEP,
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults`: its keys may be overridden by the mapping's own
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a key that is a {key_node.id} (complex key); keys are plain words",
                key_node.start_mark,
            )
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


def _expanded_size_ok(node: yaml.Node | None) -> bool:
    """False when the document, with every alias expanded, holds more than MAX_VALUES nodes.

    Aliases share one node, so composing a "billion laughs" document is cheap; this walk counts
    it as expanded and stops at the limit, long before any copy of it could be made.
    """
    count, stack = 0, [node] if node is not None else []
    while stack:
        current = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return False
        if isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack += (key, value)
    return True


def load_yaml_text(text: str) -> Any:
    """Parse YAML strictly and within bounds (see :class:`_StrictLoader`, :data:`MAX_VALUES`).

    Raises ``yaml.YAMLError`` for syntax and structure, ``ValueError`` for a document too big.
    """
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if not _expanded_size_ok(node):
            raise ValueError(
                f"expands to more than {MAX_VALUES:,} values (YAML aliases that repeat "
                "themselves?); a spec holds a few dozen"
            )
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a spec file into a mapping, turning every YAML problem into one SpecError line."""
    if not path.exists():
        raise SpecError(f"{path}: file not found; check the path (run from the project folder?)")
    if path.is_dir():
        raise SpecError(f"{path}: is a folder; give the path of a YAML spec file")
    try:
        with open(path, "rb") as f:  # bounded: /dev/zero or a huge file must not hang us
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ValueError(f"is over {MAX_BYTES:,} bytes; a spec is a few kilobytes")
        raw = load_yaml_text(data.decode("utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        what = " ".join(str(s) for s in (e.context, e.problem) if s)
        fix = "" if "; " in what else "; fix the syntax there"
        raise SpecError(f"{path}: {where}: malformed YAML: {what}{fix}") from None
    except UnicodeDecodeError as e:
        raise SpecError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the spec as UTF-8 text"
        ) from None
    except yaml.YAMLError as e:
        what = one_line(e, whole=True)
        raise SpecError(f"{path}: malformed YAML: {what}; fix the file") from None
    except ValueError as e:
        raise SpecError(f"{path}: {e}; check the file is the spec you meant") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror or e}); check the path") from None
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
    if key.count(".") >= MAX_DEPTH:
        raise SpecError(
            f"override {key[:60]}...: a key path of {key.count('.') + 1} parts; spec keys are a "
            "few levels deep (e.g. sweep.grid.methods.addrop.p)"
        )
    try:
        parsed = load_yaml_text(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value  # not YAML: keep the raw string and let validation judge it
    except ValueError as e:
        raise SpecError(f"override {key.strip()}: the value {e}") from None
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
