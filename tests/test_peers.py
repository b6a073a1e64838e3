"""The peer regularisers, each by its defining property against an independent computation on a
tiny BERT (docs/methods.md): R-Drop's loss is the authors' formula of its two passes' logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_methods import CPU, batch, tiny

from addrop_cli.methods.config import RdropParams
from addrop_cli.methods.registry import build_method


def _by_hand(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, alpha: float, form: str):
    """The authors' BERT GLUE ``bert_kl`` (form glue) or README snippet (form readme), written
    out: no library loss functions."""
    log_a, log_b = a.log_softmax(-1), b.log_softmax(-1)
    ce = [-(log.gather(1, labels[:, None])).mean() for log in (log_a, log_b)]
    tasks = ce[0] + ce[1] if form == "glue" else 0.5 * (ce[0] + ce[1])
    kl_b_a = (log_b.exp() * (log_b - log_a)).sum()  # kl_div(log p, q_tec).sum()
    kl_a_b = (log_a.exp() * (log_a - log_b)).sum()  # kl_div(log q, p_tec).sum()
    return tasks + alpha * (kl_b_a + kl_a_b) / 2


@pytest.mark.parametrize(("alpha", "form"), [(0.5, "glue"), (1.0, "readme"), (0.0, "glue")])
def test_rdrop_loss_is_the_authors_formula_of_its_two_passes(
    tiny_bert_dir: Path, alpha: float, form: str
) -> None:
    model = tiny(tiny_bert_dir, dropout=0.3)
    b = batch([10, 6, 8], labels=torch.tensor([2, 1, 0]))
    method = build_method(
        RdropParams(alpha=alpha, form=form), is_regression=False, seed=0, device=CPU
    )
    torch.manual_seed(7)
    out = method.training_step(model, b)
    torch.manual_seed(7)  # the same two dropout draws, by hand
    inputs = {k: v for k, v in b.items() if k != "labels"}
    a, second = model(**inputs).logits, model(**inputs).logits
    assert not torch.allclose(a, second)  # dropout made the passes differ: the KL term is live
    expected = _by_hand(a, second, b["labels"], alpha, form)
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert torch.equal(out.logits, a.detach())
    stats = method.epoch_stats()
    assert (stats["forward_passes"], stats["backward_passes"]) == (2.0, 1.0)


def test_rdrop_regression_adds_the_squared_difference_of_the_two_predictions(
    tiny_bert_dir: Path,
) -> None:
    """STS-B: the GLUE code adds 1.0 x MSE(first, second); alpha 0.5 x 2 x MSE is that."""
    model = tiny(tiny_bert_dir, num_labels=1, dropout=0.3)
    b = batch([10, 6], labels=torch.tensor([0.5, 3.0]))
    method = build_method(RdropParams(), is_regression=True, seed=0, device=CPU)
    torch.manual_seed(3)
    out = method.training_step(model, b)
    torch.manual_seed(3)
    inputs = {k: v for k, v in b.items() if k != "labels"}
    a, second = (model(**inputs).logits.squeeze(-1) for _ in range(2))
    y = b["labels"].float()
    expected = ((a - y) ** 2).mean() + ((second - y) ** 2).mean() + ((a - second) ** 2).mean()
    assert torch.allclose(out.loss, expected, atol=1e-6)
