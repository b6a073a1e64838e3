"""The encoder by depth: its layers, re-initialising the top ones, and each parameter's depth.

Zhang et al. (ICLR 2021, "Revisiting few-sample BERT fine-tuning"), code read at
github.com/asappresearch/revisit-bert-finetuning 0aa4f4e117ee4422f7cb9355158203e01d6730db
(``run_glue.py``: ``--reinit_pooler --reinit_layers``, ``get_optimizer_grouped_parameters``).
Where a family keeps its layers is a fact of :mod:`addrop_cli.models.families`; nothing here
names a family. docs/methods.md says where addrop differs from the authors' code.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from addrop_cli.errors import ModelError
from addrop_cli.models.families import family_of


def _base(model: nn.Module) -> nn.Module:
    return getattr(model, getattr(model, "base_model_prefix", ""), model)


def layer_count(config: Any) -> int:
    """The encoder's distinct layers (ALBERT: its layer groups, which its layers share)."""
    family = family_of(config.model_type)
    return family.layer_count(config) if family else config.num_hidden_layers


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder's layers, bottom first, from the family's ``layer_path``."""
    family = family_of(model.config.model_type)  # type: ignore[union-attr]
    node: Any = _base(model)
    for part in (family.layer_path if family else "encoder.layer").split("."):
        node = getattr(node, part, None)
    if not isinstance(node, nn.ModuleList):
        raise ModelError(f"cannot find the encoder's layers of a {type(model).__name__}")
    return list(node)


def pooler(model: nn.Module) -> nn.Module | None:
    """The base model's pooler (BERT, ALBERT), or None where the family has none."""
    found = getattr(_base(model), "pooler", None)
    return found if isinstance(found, nn.Module) else None


def reinit_top_layers(model: nn.Module, k: int) -> None:
    """Re-draw the top ``k`` layers (bottom first) and, when ``k`` > 0, the pooler, with the
    model's own initialiser (``_init_weights``, as its ``post_init`` does), drawing from the
    global generator. Layers below are untouched."""
    if k <= 0:
        return
    layers = encoder_layers(model)
    if k > len(layers):
        raise ModelError(f"train.reinit_layers: {k}, but the model has {len(layers)} layers")
    targets = [*layers[len(layers) - k :], *filter(None, [pooler(model)])]
    for top in targets:
        for module in top.modules():
            # loaded weights are flagged as initialised, and transformers' init skips them
            for tensor in [module, *module.parameters(recurse=False)]:
                if hasattr(tensor, "_is_hf_initialized"):
                    del tensor._is_hf_initialized
            model._init_weights(module)  # type: ignore[operator]


def parameter_depths(model: nn.Module) -> dict[str, int]:
    """Parameter name -> how many layers below the head it sits: 0 for the head and the pooler,
    1 for the top layer, one more per layer down, the layer count + 1 for the embeddings and
    every other encoder parameter outside the layers (DeBERTa's relative positions)."""
    layers = encoder_layers(model)
    of_module: dict[int, int] = {id(p): len(layers) - i for i, layer in enumerate(layers)
                                 for p in layer.parameters()}  # fmt: skip
    head = pooler(model)
    of_module |= {id(p): 0 for p in (head.parameters() if head else ())}
    encoder = {id(p) for p in _base(model).parameters()}
    bottom = len(layers) + 1
    return {
        name: of_module.get(id(p), bottom if id(p) in encoder else 0)
        for name, p in model.named_parameters()
    }
