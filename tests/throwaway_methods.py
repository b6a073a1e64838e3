"""Two throw-away methods, registered when pytest loads this file as a plugin
(``pytest -p throwaway_methods``, tests/ on PYTHONPATH): a plugin is imported before any test
module, so the spec's schema and the conformance suite's parameters include them. Used by
tests/methods/test_method_conformance.py only; nothing else registers them.

``throwaway`` is sound: a plain step whose loss is scaled by a draw from its own generator, kept
in its state as the base class keeps it. ``forgetful`` draws from a generator of its own too,
but leaves it out of its state, so a resumed run draws other numbers: the suite must catch it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from addrop_cli.methods.base import Method, StepOutput
from addrop_cli.methods.config import MethodConfig
from addrop_cli.methods.registry import METHODS, MethodInfo


class ThrowawayParams(MethodConfig):
    """A test's method: the plain loss times a factor drawn from the method's own generator."""

    method: Literal["throwaway"] = "throwaway"


class ForgetfulParams(MethodConfig):
    """A test's method whose random state is not saved with it (a bug the suite must find)."""

    method: Literal["forgetful"] = "forgetful"


class ThrowawayMethod(Method):
    def __init__(
        self, params: MethodConfig, *, is_regression: bool, seed: int, device: torch.device
    ) -> None:
        super().__init__(params, is_regression=is_regression, seed=seed, device=device)
        self.draws = self.own_generator(seed, device)

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        out = self.plain_step(model, batch)
        factor = 0.5 + torch.rand((), generator=self.draws, device=out.loss.device)
        self.stats.add(factor=factor)
        return StepOutput(loss=out.loss * factor, logits=out.logits)


class ForgetfulMethod(ThrowawayMethod):
    def __init__(
        self, params: MethodConfig, *, is_regression: bool, seed: int, device: torch.device
    ) -> None:
        super().__init__(params, is_regression=is_regression, seed=seed, device=device)
        self.generator = None  # the base class no longer saves it; self.draws still draws


METHODS.register(MethodInfo(ThrowawayParams, "throwaway_methods:ThrowawayMethod"))
METHODS.register(MethodInfo(ForgetfulParams, "throwaway_methods:ForgetfulMethod"))
