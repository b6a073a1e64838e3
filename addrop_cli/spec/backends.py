"""The back-ends a spec may name, in one registry: the ``executor.backend`` values the schema
accepts and the class that carries each out (``execution/backends/``; imported when used, as the
execution layer sits above the spec). Adding a back-end: its module and one line here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
