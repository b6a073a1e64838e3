"""Re-initialisation and layer-wise learning-rate decay (Zhang et al., ICLR 2021), each by its
defining property on a tiny model built from a config (docs/methods.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from family_models import tiny_family_model
from torch import nn
from transformers import AutoModelForSequenceClassification

from addrop_cli.engine.optim import build_optimizer
from addrop_cli.models.families import FAMILIES
from addrop_cli.models.layerwise import encoder_layers, layer_count, reinit_top_layers
from addrop_cli.spec.schema import TrainSpec


def _loaded(model_type: str, tmp_path: Path) -> nn.Module:
    """A tiny model saved and loaded back: its weights are flagged as loaded, as in a run."""
    tiny_family_model(model_type).save_pretrained(tmp_path / model_type)
    return AutoModelForSequenceClassification.from_pretrained(tmp_path / model_type)


def _bert_init_by_hand(modules: list[nn.Module], std: float) -> None:
    """BERT's initialiser written out: normal weights, zero biases, LayerNorm at 1 and 0."""
    for top in modules:
        for module in top.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.data.normal_(mean=0.0, std=std)
            if isinstance(module, nn.LayerNorm):
                module.weight.data.fill_(1.0)
                module.bias.data.zero_()
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()


def test_reinit_redraws_the_top_layers_and_pooler_with_the_models_initialiser(
    tmp_path: Path,
) -> None:
    model = _loaded("bert", tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(11)
    reinit_top_layers(model, 2)

    twin = _loaded("bert", tmp_path)  # an independent re-init of the same weights, same seed
    torch.manual_seed(11)
    base = twin.bert
    _bert_init_by_hand([*base.encoder.layer[1:], base.pooler], twin.config.initializer_range)

    after = model.state_dict()
    for name, value in twin.state_dict().items():
        assert torch.equal(after[name], value), name
        redrawn = name.startswith(("bert.encoder.layer.1.", "bert.encoder.layer.2.", "bert.pooler"))
        if not redrawn:
            assert torch.equal(value, before[name]), f"{name} is below the top 2 but changed"
        elif name.endswith("query.weight"):
            assert not torch.equal(value, before[name]), f"{name} was not re-drawn"


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_every_family_reinits_its_top_layer_and_keeps_the_rest(
    model_type: str, tmp_path: Path
) -> None:
    model = _loaded(model_type, tmp_path)
    layers = encoder_layers(model)
    assert len(layers) == layer_count(model.config)
    top = {id(p) for p in layers[-1].parameters()}
    before = {n: p.clone() for n, p in model.named_parameters()}
    reinit_top_layers(model, 1)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing was re-drawn"
    for name, param in model.named_parameters():
        if name in changed:
            assert id(param) in top or "pooler" in name, f"{name} is not in the top layer"


def test_reinit_beyond_the_depth_is_refused(tmp_path: Path) -> None:
    model = tiny_family_model("bert")
    with pytest.raises(Exception, match="reinit_layers: 4, but the model has 3 layers"):
        reinit_top_layers(model, 4)


def _expected_depth(name: str, layers: int) -> int:
    """By the parameter's name: head and pooler 0, layer i at layers - i, embeddings lowest."""
    if name.startswith("classifier") or ".pooler." in name:
        return 0
    if ".encoder.layer." in name:
        return layers - int(name.split(".encoder.layer.")[1].split(".")[0])
    assert ".embeddings." in name, name
    return layers + 1


@pytest.mark.parametrize("eta", [0.5, 0.95])
def test_layer_lr_decay_gives_every_parameter_the_rate_of_its_layer(eta: float) -> None:
    model = tiny_family_model("bert")
    train = TrainSpec(lr=1e-3, layer_lr_decay=eta)
    optimizer = build_optimizer(model, train)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(lr_of) == len(list(model.parameters()))  # every parameter in exactly one group
    depths = set()
    for name, param in model.named_parameters():
        depth = _expected_depth(name, 3)
        depths.add(depth)
        assert lr_of[id(param)] == pytest.approx(1e-3 * eta**depth), name
    assert depths == {0, 1, 2, 3, 4}  # head, three layers, embeddings
    assert optimizer.param_groups[0]["lr"] == 1e-3  # the head first: the logged rate is lr


def test_without_decay_the_optimiser_keeps_its_two_groups() -> None:
    model = tiny_family_model("bert")
    optimizer = build_optimizer(model, TrainSpec(lr=1e-3, weight_decay=0.01))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}
