"""The one method registry: a method's parameter model and where its class lives.

The spec's discriminated union of method parameters, ``addrop list methods``,
:func:`build_method` and the method conformance suite
(``tests/methods/test_method_conformance.py``) are all built from :data:`METHODS`, a
:class:`~addrop_cli.registry.Registry`. A method's name is spelled once, in its parameter model's
``method`` literal. The classes are named by import path so that reading a spec never imports
torch. Adding a method is its parameter model in
:mod:`addrop_cli.methods.config`, one module with its :class:`Method` subclass, and one line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from addrop_cli.methods.config import (
    AddropParams,
    BaselineParams,
    ChildtuningParams,
    DropoutParams,
    MethodConfig,
    MixoutParams,
    RdropParams,
)
from addrop_cli.registry import Registry, load_object

if TYPE_CHECKING:
    import torch

    from addrop_cli.methods.base import Method


@dataclass(frozen=True)
class MethodInfo:
    params: type[MethodConfig]
    implementation: str
    """``module:Class`` of the :class:`~addrop_cli.methods.base.Method` subclass."""

    @property
    def name(self) -> str:
        return self.params.method_name()

    @property
    def summary(self) -> str:
        return (self.params.__doc__ or "").strip().splitlines()[0]

    def load(self) -> type[Method]:
        return load_object(self.implementation)


METHODS: Registry[MethodInfo] = Registry(
    "method",
    [
        MethodInfo(BaselineParams, "addrop_cli.methods.baseline:BaselineMethod"),
        MethodInfo(DropoutParams, "addrop_cli.methods.dropout:DropoutMethod"),
        MethodInfo(AddropParams, "addrop_cli.methods.addrop:AddropMethod"),
        MethodInfo(RdropParams, "addrop_cli.methods.rdrop:RdropMethod"),
        MethodInfo(ChildtuningParams, "addrop_cli.methods.childtuning:ChildtuningMethod"),
        MethodInfo(MixoutParams, "addrop_cli.methods.mixout:MixoutMethod"),
    ],
    key=lambda info: info.name,
)
METHOD_NAMES = METHODS.names


def build_method(
    params: MethodConfig, *, is_regression: bool, seed: int, device: torch.device
) -> Method:
    """The method the parameters name; its mask generator (if any) lives on ``device``,
    seeded from ``seed`` and separate from the data-order and initialisation generators."""
    cls = METHODS[params.method_name()].load()
    return cls(params, is_regression=is_regression, seed=seed, device=device)
