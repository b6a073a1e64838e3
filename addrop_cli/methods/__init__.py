"""Fine-tuning methods behind one interface, and the registry the training loop builds from.

Adding a method is one new module with a :class:`~addrop_cli.methods.base.Method` subclass and
one entry in :data:`METHOD_REGISTRY` (plus its parameters in ``spec.py``).
"""

from __future__ import annotations

import torch

from addrop_cli.methods.addrop import AddropMethod
from addrop_cli.methods.base import Method, StepOutput, task_loss
from addrop_cli.methods.baseline import BaselineMethod
from addrop_cli.methods.dropout import DropoutMethod
from addrop_cli.spec import AddropParams, BaselineParams, DropoutParams

METHOD_REGISTRY: dict[str, type[Method]] = {
    BaselineMethod.name: BaselineMethod,
    DropoutMethod.name: DropoutMethod,
    AddropMethod.name: AddropMethod,
}


def build_method(
    params: BaselineParams | DropoutParams | AddropParams,
    *,
    is_regression: bool,
    seed: int,
    device: torch.device,
) -> Method:
    """The method the parameters name; its mask generator (if any) lives on ``device``,
    seeded from ``seed`` and separate from the data-order and initialisation generators."""
    cls = METHOD_REGISTRY[params.method]
    return cls(params, is_regression=is_regression, seed=seed, device=device)  # type: ignore[call-arg]


__all__ = ["METHOD_REGISTRY", "Method", "StepOutput", "build_method", "task_loss"]
