"""Fine-tuning methods behind one interface (baseline, dropout, AD-DROP, their registry), and
AD-DROP as a library for your own training script (docs/library.md):

    from addrop_cli.methods import AddropConfig, attach_addrop      # any training loop
    from addrop_cli.methods import AddropTrainer                     # transformers Trainer
    from addrop_cli.methods import MethodTrainer, RdropParams        # any method, in a Trainer
    from addrop_cli.methods import ChildtuningParams                 # e.g. Child-Tuning_D

The library names are loaded lazily, so importing this package (the spec does, through
:mod:`addrop_cli.methods.registry`) never imports torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from addrop_cli.methods.config import AddropConfig, AddropParams, ChildtuningParams, RdropParams

if TYPE_CHECKING:
    from addrop_cli.methods.api import AddropHandle, AddropStep, attach_addrop
    from addrop_cli.methods.trainer import (
        AddropCallback,
        AddropTrainer,
        AddropTrainerMixin,
        MethodTrainer,
    )

__all__ = [
    "AddropCallback",
    "AddropConfig",
    "AddropHandle",
    "AddropParams",
    "AddropStep",
    "AddropTrainer",
    "AddropTrainerMixin",
    "ChildtuningParams",
    "MethodTrainer",
    "RdropParams",
    "attach_addrop",
]

_LAZY = {
    "AddropHandle": "addrop_cli.methods.api",
    "AddropStep": "addrop_cli.methods.api",
    "attach_addrop": "addrop_cli.methods.api",
    "AddropCallback": "addrop_cli.methods.trainer",
    "AddropTrainer": "addrop_cli.methods.trainer",
    "AddropTrainerMixin": "addrop_cli.methods.trainer",
    "MethodTrainer": "addrop_cli.methods.trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
