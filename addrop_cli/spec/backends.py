"""The back-ends a spec may name, in one registry: the ``executor.backend`` values the schema
accepts and the class that carries each out (``execution/backends/``; imported when used, as the
execution layer sits above the spec). Adding a back-end: its module and one line here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticCustomError

from addrop_cli.registry import Registry, load_object


@dataclass(frozen=True)
class BackendInfo:
    name: str
    implementation: str
    """``module:Class`` of the class that implements the execution layer's ``Backend``."""

    def load(self) -> Any:
        return load_object(self.implementation)


BACKENDS: Registry[BackendInfo] = Registry(
    "back-end",
    [
        BackendInfo("local", "addrop_cli.execution.backends.local:LocalBackend"),
        BackendInfo("slurm", "addrop_cli.execution.backends.slurm:SlurmBackend"),
    ],
    key=lambda b: b.name,
)


def registered_backend(value: object) -> object:
    """``executor.backend`` checked against the registry when a spec is read, not when the schema
    was imported: a plugin may register its back-end after that (a process whose start-up already
    imported the schema). Refused as a literal, so the message names the choices as elsewhere."""
    names = [repr(name) for name in BACKENDS.names]
    if value not in BACKENDS.names:
        expected = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": expected}
        )
    return value
