"""Settings without effect: configurations that validation calls equal in effect train the same.

The property behind ``MethodConfig.effective``: two AD-DROP configurations with equal effective
parameters give bit-identical steps (masks, logits, loss) on the same model, batch and seed; one
that differs in an effective setting does not.
"""

from __future__ import annotations

import pytest
import torch
from family_models import padded_ids, tiny_family_model

from addrop_cli.methods import AddropConfig, attach_addrop


def _step(config: AddropConfig) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    model = tiny_family_model("bert")
    handle = attach_addrop(model, config, seed=7)
    batch = padded_ids(model, [9, 7, 4], seed=2)
    batch["labels"] = torch.tensor([0, 1, 0])
    out = handle.step(batch)
    return out.masks, out.loss.detach()


def _same(a: AddropConfig, b: AddropConfig) -> bool:
    (masks_a, loss_a), (masks_b, loss_b) = _step(a), _step(b)
    return (
        masks_a.keys() == masks_b.keys()
        and all(torch.equal(masks_a[k], masks_b[k]) for k in masks_a)
        and torch.equal(loss_a, loss_b)
    )


PAIRS_EQUAL_IN_EFFECT = [
    # random dropping: only p*q matters, and no attribution setting applies
    (dict(attribution="random", p=0.5, q=0.4), dict(attribution="random", p=0.4, q=0.5)),
    (dict(attribution="random", drop="high"), dict(attribution="random", drop="low", ig_steps=3)),
    (dict(attribution="random", labels="pseudo"), dict(attribution="random", labels="gold")),
    # plain gradients: the integrated-gradient settings are unused
    (dict(attribution="gradient"), dict(attribution="gradient", ig_steps=2, ig="reference")),
    # attention scores take no gradient: the label choice is unused
    (dict(attribution="attention"), dict(attribution="attention", labels="gold")),
]


@pytest.mark.parametrize(("a", "b"), PAIRS_EQUAL_IN_EFFECT)
def test_configurations_equal_in_effect_give_identical_steps(a: dict, b: dict) -> None:
    first = AddropConfig(cross_tuning=False, **{"p": 0.5, "q": 0.5, **a})
    second = AddropConfig(cross_tuning=False, **{"p": 0.5, "q": 0.5, **b})
    assert first != second and first.effective() == second.effective()
    assert _same(first, second)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (dict(attribution="gradient", drop="high"), dict(attribution="gradient", drop="low")),
        (dict(attribution="random", p=0.5, q=0.4), dict(attribution="random", p=0.5, q=0.8)),
        (
            dict(attribution="gradient", labels="pseudo"),
            dict(attribution="gradient", labels="gold"),
        ),
    ],  # fmt: skip
)
def test_configurations_that_differ_in_effect_are_told_apart(a: dict, b: dict) -> None:
    first = AddropConfig(cross_tuning=False, **{"p": 0.5, "q": 0.5, **a})
    second = AddropConfig(cross_tuning=False, **{"p": 0.5, "q": 0.5, **b})
    assert first.effective() != second.effective()
    assert not _same(first, second)


def test_inert_names_only_settings_the_method_ignores() -> None:
    assert AddropConfig(attribution="integrated_gradient").inert() == {}
    assert set(AddropConfig(attribution="gradient").inert()) == {"ig_steps", "ig"}
    assert set(AddropConfig(attribution="random").inert()) == {"ig_steps", "ig", "labels", "drop"}
