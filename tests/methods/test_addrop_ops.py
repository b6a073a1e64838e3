"""AD-DROP's pure tensor maths, on hand-made tensors (docs/algorithm.md, steps 3-4)."""

from __future__ import annotations

import math

import pytest
import torch

from addrop_cli.methods import addrop_ops as ops
from addrop_cli.methods.config import AddropParams


def _batch(lengths: list[int], heads: int = 3, length: int | None = None, seed: int = 0):
    """Distinct random scores (no ties) and the padding mask for examples of these lengths."""
    t = length or max(lengths)
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(len(lengths), heads, t, t, generator=g)
    key_real = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    return scores, key_real


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("n", "p", "drop", "expected"),
    [
        (10, 0.3, "high", 3),
        (10, 0.9, "high", 9),  # (1 - 0.9) * 10 is 0.999... in floats: must still floor to 1
        (10, 0.7, "high", 7),
        (7, 0.3, "high", 3),  # 7 - floor(4.9)
        (1, 0.3, "high", 1),  # 1 - floor(0.7): a one-token row is all candidate
        (2, 0.1, "high", 1),
        (10, 0.3, "low", 3),
        (7, 0.3, "low", 2),  # floor(2.1)
        (1, 0.3, "low", 0),
        (0, 0.5, "high", 0),
    ],
)
def test_candidate_counts_follow_the_formula(n: int, p: float, drop: str, expected: int) -> None:
    assert ops.candidate_counts(torch.tensor([n]), p, drop).item() == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("drop", ["high", "low"])
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_candidate_region_is_exactly_the_top_keys_per_row(drop: str, p: float) -> None:
    lengths = [9, 4, 1, 6]
    scores, key_real = _batch(lengths, length=11)
    region = ops.candidate_region(scores, key_real, p, drop)  # type: ignore[arg-type]
    for b, n in enumerate(lengths):
        k = n - math.floor((1 - p) * n + 1e-9) if drop == "high" else math.floor(p * n + 1e-9)
        assert not region[b, :, :, n:].any(), "padding keys are never candidates"
        for h in range(scores.shape[1]):
            for i in range(scores.shape[2]):
                row = scores[b, h, i, :n].tolist()
                order = sorted(range(n), key=lambda j, row=row: row[j], reverse=drop == "high")
                expected = set(order[:k])
                assert set(region[b, h, i].nonzero().flatten().tolist()) == expected


def test_dropped_positions_are_candidates_at_rate_q_and_padding_is_untouched() -> None:
    lengths = [40, 33, 25, 12, 40, 7]
    scores, key_real = _batch(lengths, heads=8, length=48, seed=1)
    p, q = 0.4, 0.3
    region = ops.candidate_region(scores, key_real, p)
    mask = ops.drop_mask(scores, key_real, p=p, q=q, generator=_gen(5))
    real_rows = key_real[:, None, :, None].expand_as(mask)
    assert not (mask & ~region).any(), "only candidates are dropped"
    assert not (mask & ~key_real[:, None, None, :]).any(), "padding keys are never dropped"
    assert not (mask & ~real_rows).any(), "padding query rows are left alone"
    candidates = int((region & real_rows).sum())
    rate = float((mask & real_rows).sum()) / candidates
    sigma = math.sqrt(q * (1 - q) / candidates)
    assert abs(rate - q) < 5 * sigma


def test_random_control_drops_p_times_q_of_real_positions() -> None:
    lengths = [40, 33, 25, 12]
    _, key_real = _batch(lengths, length=40)
    shape = torch.Size((4, 8, 40, 40))
    p, q = 0.5, 0.4
    mask = ops.drop_mask(None, key_real, p=p, q=q, generator=_gen(2), shape=shape)
    pair = key_real[:, None, :, None] & key_real[:, None, None, :]
    assert not (mask & ~pair).any()
    real = int(pair.expand(shape).sum())
    rate = float(ops.dropped_fraction(mask, key_real))
    assert abs(rate - p * q) < 5 * math.sqrt(p * q * (1 - p * q) / real)


def test_rows_are_never_emptied_the_best_key_survives() -> None:
    scores, key_real = _batch([2, 1, 5], length=5, seed=3)
    mask = ops.drop_mask(scores, key_real, p=1.0, q=1.0, generator=_gen())
    kept = ~mask & key_real[:, None, None, :]
    real_rows = key_real[:, None, :]
    assert bool((kept.sum(-1)[real_rows.expand(kept.shape[:-1])] == 1).all())
    best = scores.masked_fill(~key_real[:, None, None, :], -math.inf).argmax(-1)
    assert bool(kept.gather(-1, best[..., None]).squeeze(-1)[real_rows.expand_as(best)].all())


def test_random_control_also_keeps_one_key_per_row() -> None:
    _, key_real = _batch([2, 1, 5], length=5)
    shape = torch.Size((3, 2, 5, 5))
    mask = ops.drop_mask(None, key_real, p=1.0, q=1.0, generator=_gen(), shape=shape)
    kept = (~mask & key_real[:, None, None, :]).sum(-1)
    assert bool((kept[key_real[:, None, :].expand(kept.shape)] == 1).all())


def test_same_generator_seed_gives_the_same_mask() -> None:
    scores, key_real = _batch([12, 9], length=12)

    def make(seed: int) -> torch.Tensor:
        return ops.drop_mask(scores, key_real, p=0.5, q=0.5, generator=_gen(seed))

    assert torch.equal(make(7), make(7))
    assert not torch.equal(make(7), make(8))


def test_dropped_fraction_counts_real_positions_only() -> None:
    key_real = torch.tensor([[True, True, False], [True, False, False]])
    mask = torch.zeros(2, 1, 3, 3, dtype=torch.bool)
    mask[0, 0, 0, 1] = True
    mask[1, 0, 0, 0] = True
    # real positions: 2*2 + 1*1 = 5, two of them dropped
    assert float(ops.dropped_fraction(mask, key_real)) == pytest.approx(2 / 5)


def test_cross_tuning_schedule() -> None:
    crossed, always = AddropParams(cross_tuning=True), AddropParams(cross_tuning=False)
    assert [crossed.active_in(e) for e in range(5)] == [False, True, False, True, False]
    assert all(always.active_in(e) for e in range(5))


def test_objectives_and_integrated_attribution() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]], requires_grad=True)
    (grad,) = torch.autograd.grad(ops.pseudo_label_objective(logits), logits)
    assert torch.equal(grad, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    scores = torch.tensor([[1.0], [3.0]], requires_grad=True)
    (grad,) = torch.autograd.grad(
        ops.regression_objective(scores, torch.tensor([2.0, 2.0])), scores
    )
    # -d/dz mean((z - y)^2) = -(z - y): raising the too-low prediction counts as positive
    assert torch.allclose(grad, torch.tensor([[1.0], [-1.0]]))
    attention = torch.tensor([0.5, 0.25])
    assert torch.allclose(
        ops.integrated_attribution(attention, torch.tensor([4.0, 8.0]), 4),
        torch.tensor([0.5, 0.5]),
    )


def test_gold_objective_differentiates_the_gold_logit() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]], requires_grad=True)
    (grad,) = torch.autograd.grad(ops.gold_label_objective(logits, torch.tensor([2, 1])), logits)
    assert torch.equal(grad, torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))


def test_integrated_step_reference_carries_a_factor_alpha() -> None:
    attention = torch.tensor([0.5, 0.25])

    def f(a: torch.Tensor) -> torch.Tensor:  # a non-linear function of the attention
        return (a**2).sum()

    for alpha in (0.25, 1.0):
        leaf, used = ops.integrated_step(attention, alpha, "standard")
        (standard,) = torch.autograd.grad(f(used), leaf)
        assert torch.allclose(standard, 2 * alpha * attention)  # f'(alpha A)
        leaf, used = ops.integrated_step(attention, alpha, "reference")
        (reference,) = torch.autograd.grad(f(used), leaf)
        assert torch.allclose(reference, alpha * standard)
        assert torch.equal(leaf, attention) and not attention.requires_grad
