"""Mixout (Lee et al., ICLR 2020) by its defining properties, against the authors' MixLinear
written out by hand and the stock model on a tiny BERT (docs/methods.md)."""

from __future__ import annotations

from pathlib import Path

import torch
from family_models import stock_twin
from test_methods import CPU, batch, tiny
from torch import nn

from addrop_cli.methods.config import BaselineParams, MixoutParams
from addrop_cli.methods.mixout import MixLinear
from addrop_cli.methods.registry import build_method


def _authors_mixout(weight: torch.Tensor, target: torch.Tensor, p: float) -> tuple:
    """bloodwass/mixout ``Mixout.forward`` for a 2-D weight, written out: one Bernoulli(1 - p)
    row drawn into ``noise[0]`` and repeated over the rows; returns the mixed weight and noise."""
    noise = torch.empty(weight.shape[1]).bernoulli_(1 - p).repeat(weight.shape[0], 1)
    return ((1 - noise) * target + noise * weight - p * target) / (1 - p), noise


def test_mixlinear_is_the_authors_layer_its_mask_gradient_and_bias() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    target = linear.weight.detach().clone()
    layer = MixLinear.wrapping(linear, 0.4)
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))  # moved away from its target
    x = torch.randn(5, 6)
    torch.manual_seed(3)
    layer(x).square().sum().backward()

    torch.manual_seed(3)  # the same draw, by hand
    mixed, noise = _authors_mixout(layer.weight.detach(), target, 0.4)
    mixed.requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)
    expected = x @ mixed.T + bias
    expected.square().sum().backward()
    assert noise.unique(dim=0).shape[0] == 1, "one mask row shared by every output row"
    # the authors' backward: grad x noise, without the forward's 1 / (1 - p)
    assert torch.equal(layer.weight.grad, mixed.grad * noise)
    assert torch.equal(layer.bias.grad, bias.grad)  # the bias is not mixed


def test_mixlinear_forward_is_the_authors_formula() -> None:
    torch.manual_seed(0)
    layer = MixLinear.wrapping(nn.Linear(6, 4), 0.4)
    with torch.no_grad():
        layer.weight.mul_(3)
    x = torch.randn(5, 6)
    torch.manual_seed(5)
    out = layer(x)
    torch.manual_seed(5)
    mixed, _ = _authors_mixout(layer.weight.detach(), layer.target, 0.4)
    assert torch.allclose(out, nn.functional.linear(x, mixed, layer.bias), atol=1e-6)


def test_the_mixed_weights_are_the_current_ones_in_expectation() -> None:
    torch.manual_seed(0)
    layer = MixLinear.wrapping(nn.Linear(8, 3, bias=False), 0.6)
    with torch.no_grad():
        layer.weight.add_(1.0)
    eye = torch.eye(8)
    torch.manual_seed(1)
    mean = torch.stack([layer(eye).detach().T for _ in range(4000)]).mean(0)
    assert torch.allclose(mean, layer.weight.detach(), atol=0.08)
    assert not torch.allclose(mean, layer.target, atol=0.5)


def _moved(model: nn.Module, *, linear_weights_only: bool = False) -> None:
    """Fine-tuning's effect, stood in for: the weights away from where they started (only
    the mixed ones: the linear layers' weight matrices, or every parameter)."""
    torch.manual_seed(9)
    params = (
        [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
        if linear_weights_only
        else list(model.parameters())
    )
    with torch.no_grad():
        for param in params:
            param.add_(0.05 * torch.randn_like(param))


def _attached(tiny_bert_dir: Path, p: float, dropout: float = 0.1) -> tuple:
    model = tiny(tiny_bert_dir, dropout=dropout)
    original = stock_twin(model)
    method = build_method(MixoutParams(p=p), is_regression=False, seed=0, device=CPU)
    method.attach(model)
    return model, original, method


def test_attach_wraps_every_linear_zeroes_dropout_and_draws_nothing(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir, dropout=0.1)
    params = {n: id(p) for n, p in model.named_parameters()}
    keys = set(model.state_dict())
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    torch.manual_seed(1)
    build_method(MixoutParams(p=0.3), is_regression=False, seed=0, device=CPU).attach(model)
    assert torch.equal(torch.rand(3), (torch.manual_seed(1), torch.rand(3))[1]), "drew numbers"
    modules = dict(model.named_modules())
    assert all(isinstance(modules[n], MixLinear) for n in linears)
    assert {"classifier", "bert.pooler.dense"} <= set(linears)
    assert all(m.p == 0 for m in model.modules() if isinstance(m, nn.Dropout))
    assert {n: id(p) for n, p in model.named_parameters()} == params  # the optimiser's tensors
    assert set(model.state_dict()) == keys  # checkpoints keep the stock keys


def test_p_zero_is_the_stock_model_bit_for_bit(tiny_bert_dir: Path) -> None:
    model, stock, method = _attached(tiny_bert_dir, 0.0)
    assert not any(isinstance(m, MixLinear) for m in model.modules())
    baseline = build_method(BaselineParams(), is_regression=False, seed=0, device=CPU)
    b = batch([10, 6, 8], labels=torch.tensor([2, 1, 0]))
    torch.manual_seed(4)
    ours = method.training_step(model, b)
    torch.manual_seed(4)  # the same dropout draws: dropout stays on at p = 0
    theirs = baseline.training_step(stock, b)
    assert torch.equal(ours.loss, theirs.loss)
    ours.loss.backward()
    theirs.loss.backward()
    for (name, a), b_ in zip(model.named_parameters(), stock.parameters(), strict=True):
        assert torch.equal(a.grad, b_.grad), name


def test_the_mixlinear_at_p_zero_is_nn_linear_bit_for_bit() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    x = torch.randn(5, 6)
    stock = linear(x)
    assert torch.equal(MixLinear.wrapping(linear, 0.0).train()(x), stock)


def test_eval_forward_is_the_stock_forward(tiny_bert_dir: Path) -> None:
    model, _, _ = _attached(tiny_bert_dir, 0.7)
    _moved(model)
    stock = stock_twin(model).eval()  # the moved weights, stock layers
    b = {k: v for k, v in batch([10, 6, 8]).items() if k != "labels"}
    model.eval()
    first = model(**b).logits
    assert torch.equal(first, stock(**b).logits)
    assert torch.equal(first, model(**b).logits)  # deterministic


def test_with_every_column_mixed_it_returns_the_target(tiny_bert_dir: Path) -> None:
    model, original, _ = _attached(tiny_bert_dir, 0.9, dropout=0.0)
    _moved(model, linear_weights_only=True)  # biases, embeddings, norms: no target
    b = {k: v for k, v in batch([10, 6, 8]).items() if k != "labels"}
    targets = original(**b).logits.detach()
    layers = [m for m in model.modules() if isinstance(m, MixLinear)]
    for layer in layers:  # p < 1 in a spec: force every mask entry to "mix"
        layer.draw_keep = lambda layer=layer: torch.zeros(layer.weight.shape[1])  # type: ignore[method-assign]
    moved = stock_twin(model)(**b).logits.detach()
    assert torch.allclose(model(**b).logits, targets, atol=1e-5)
    assert not torch.allclose(moved, targets, atol=1e-3)
    for layer in layers:  # the authors' p = 1: the target exactly
        layer.p = 1.0
    assert torch.equal(model(**b).logits, targets)
