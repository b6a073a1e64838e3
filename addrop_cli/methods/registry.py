"""The one method registry: a method's name, its parameter model and where its class lives.

The spec's discriminated union of method parameters, ``addrop list methods`` and
:func:`addrop_cli.methods.build_method` are all built from :data:`METHODS`. The classes are named
by import path so that reading a spec never imports torch. Adding a method is its parameter
model in :mod:`addrop_cli.methods.config`, one module with its :class:`Method` subclass, and one
line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from addrop_cli.methods.config import (
    AddropParams,
    BaselineParams,
    DropoutParams,
    MethodConfig,
    MixoutParams,
    RdropParams,
)

if TYPE_CHECKING:
    import torch

    from addrop_cli.methods.base import Method


@dataclass(frozen=True)
class MethodInfo:
    name: str
    params: type[MethodConfig]
    implementation: str
    """``module:Class`` of the :class:`~addrop_cli.methods.base.Method` subclass."""

    @property
    def summary(self) -> str:
        return (self.params.__doc__ or "").strip().splitlines()[0]

    def load(self) -> type[Method]:
        module, _, cls = self.implementation.partition(":")
        return getattr(importlib.import_module(module), cls)


METHODS: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo("baseline", BaselineParams, "addrop_cli.methods.baseline:BaselineMethod"),
        MethodInfo("dropout", DropoutParams, "addrop_cli.methods.dropout:DropoutMethod"),
        MethodInfo("addrop", AddropParams, "addrop_cli.methods.addrop:AddropMethod"),
        MethodInfo("rdrop", RdropParams, "addrop_cli.methods.rdrop:RdropMethod"),
        MethodInfo("mixout", MixoutParams, "addrop_cli.methods.mixout:MixoutMethod"),
    )
}
METHOD_NAMES = tuple(METHODS)


def build_method(
    params: MethodConfig, *, is_regression: bool, seed: int, device: torch.device
) -> Method:
    """The method the parameters name; its mask generator (if any) lives on ``device``,
    seeded from ``seed`` and separate from the data-order and initialisation generators."""
    cls = METHODS[params.method].load()  # type: ignore[attr-defined]
    return cls(params, is_regression=is_regression, seed=seed, device=device)  # type: ignore[call-arg]
