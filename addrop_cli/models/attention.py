"""Hook AD-DROP into a model's attention: one entry point for every supported family.

:func:`attach_attention_hook` checks the model (family, layer indices), installs the family's
hook kind (:mod:`addrop_cli.models.families` says which) and returns the model's
:class:`~addrop_cli.models.hook.AttentionHook`; :func:`detach_attention_hook` restores the stock
model. With the hook attached and no AD-DROP block open, every family computes exactly what the
stock model computes (the tests check this bit for bit on padded batches).
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from addrop_cli.errors import ModelError
from addrop_cli.models import attention_function, probability_tap
from addrop_cli.models.families import (
    Family,
    family_of,
    layer_problems,
    model_type_problem,
    resolve_layers,
)
from addrop_cli.models.hook import AttentionHook, explicit_attention

__all__ = ["AttentionHook", "attach_attention_hook", "detach_attention_hook", "explicit_attention"]


def _checked_family(model: PreTrainedModel, layers: list[int] | str) -> tuple[Family, list[int]]:
    config = model.config
    where = getattr(config, "_name_or_path", "") or config.model_type
    problem = model_type_problem(config, where)
    if problem:
        raise ModelError(problem)
    problems = layer_problems(layers, config, where)
    if problems:
        raise ModelError(*problems)
    family = family_of(config.model_type)
    assert family is not None
    modules = family.attention_modules(model)
    # ALBERT: one module per layer group (one group in every released checkpoint)
    expected = len(modules) if family.shared_layers else config.num_hidden_layers
    if not modules or len(modules) != expected:
        raise ModelError(
            f"model: {where}: found {len(modules)} {family.attention_class} modules for "
            f"{config.num_hidden_layers} layers; this transformers version lays the model out "
            "differently than addrop expects"
        )
    return family, resolve_layers(layers, config)


def attach_attention_hook(model: PreTrainedModel, layers: list[int] | str) -> AttentionHook:
    """Route ``model``'s attention through an AD-DROP hook for ``layers``.

    Refuses unsupported model types and layer indices the model does not have (or that AD-DROP
    cannot target) with a one-line :class:`ModelError`. A model carries one hook at a time
    (``model.addrop_hook``); attaching again replaces it.
    """
    family, targets = _checked_family(model, layers)
    detach_attention_hook(model)
    hook = AttentionHook(targets)
    modules = family.attention_modules(model)
    if family.hook == "probability-tap":
        probability_tap.install_taps(modules, hook)
    else:
        attention_function.register()
        for index, module in enumerate(modules):
            module.addrop_hook = hook
            module.addrop_layer = None if family.shared_layers else index
        if family.shared_layers:
            model.addrop_reset = family.encoder(model).register_forward_pre_hook(
                lambda *_: setattr(hook, "calls", 0)
            )
        model.addrop_stock_attention = model.config._attn_implementation
        model.set_attn_implementation(attention_function.ADDROP_ATTENTION)
    model.addrop_hook = hook
    return hook


def detach_attention_hook(model: nn.Module) -> None:
    """Put the model back exactly as it was loaded (no-op when no hook is attached)."""
    if getattr(model, "addrop_hook", None) is None:
        return
    family = family_of(model.config.model_type)
    assert family is not None
    modules = family.attention_modules(model)
    if family.hook == "probability-tap":
        probability_tap.remove_taps(modules)
    for module in modules:
        for name in ("addrop_hook", "addrop_layer"):
            if hasattr(module, name):
                delattr(module, name)
    reset = getattr(model, "addrop_reset", None)
    if reset is not None:
        reset.remove()
        del model.addrop_reset
    stock = getattr(model, "addrop_stock_attention", None)
    if stock is not None:
        model.set_attn_implementation(stock)
        del model.addrop_stock_attention
    del model.addrop_hook
