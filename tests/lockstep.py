"""The CLI's training step and the Trainer's, side by side on twin models: one home for the
lockstep that the method conformance suite and the library tests both check."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def steps_in_lockstep(method, ours, trainer, theirs, batches: Iterable[Mapping]) -> None:  # type: ignore[no-untyped-def]
    """Each batch through ``method.training_step`` on ``ours`` (the loop: backward, then the
    pre-optimiser hook) and through ``trainer.compute_loss`` on ``theirs`` (backward, then the
    Trainer's pre-optimiser-step callbacks), the global RNG reseeded alike before each, SGD on
    both: the losses must be equal to the bit at every step."""
    optimisers = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (ours, theirs)]
    for i, batch in enumerate(batches):
        torch.manual_seed(100 + i)
        cli_loss = method.training_step(ours.train(), dict(batch)).loss
        torch.manual_seed(100 + i)
        trainer_loss = trainer.compute_loss(theirs.train(), dict(batch))
        assert torch.equal(cli_loss, trainer_loss), f"step {i}"
        cli_loss.backward()
        method.before_optimizer_step(ours)
        trainer_loss.backward()
        trainer.callback_handler.on_pre_optimizer_step(trainer.args, trainer.state, trainer.control)
        for opt in optimisers:
            opt.step()
            opt.zero_grad()
