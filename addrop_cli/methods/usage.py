"""The library API's argument checks: a first-hour mistake gets one line that names the fix.

Each check raises :class:`~addrop_cli.errors.UsageError` (a ``TypeError`` and a ``ValueError``)
instead of the ``KeyError`` or ``AttributeError`` that would surface deep inside a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from addrop_cli.errors import UsageError
from addrop_cli.methods.config import AddropConfig

MAX_SEED = 2**64 - 1
"""torch seeds are unsigned 64-bit integers."""


def checked_config(config: Any) -> AddropConfig:
    """``config`` as an :class:`AddropConfig`: the defaults for None, a dict validated."""
    if config is None:
        return AddropConfig()
    if isinstance(config, AddropConfig):
        return config
    if not isinstance(config, Mapping):
        raise UsageError(
            f"attach_addrop: config must be an AddropConfig or a dict, got "
            f"{type(config).__name__}; write AddropConfig(p=0.3, q=0.3, layers=[0])"
        )
    try:
        return AddropConfig.model_validate(dict(config))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'config'}: {e['msg']}"
            for e in err.errors()
        )
        raise UsageError(
            f"attach_addrop: config: {problems} (the keys and values of AddropConfig, "
            "docs/library.md)"
        ) from None


def check_model(model: Any, *, replace: bool) -> None:
    """A loaded sequence-classification model with no AD-DROP attached (unless ``replace``)."""
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise UsageError(
            f"attach_addrop: expected a loaded transformers model, got {type(model).__name__}; "
            "load one with AutoModelForSequenceClassification.from_pretrained(...)"
        )
    if getattr(model, "base_model", None) is model:
        raise UsageError(
            f"attach_addrop: {type(model).__name__} has no task head (AD-DROP attributes the "
            "classifier's logits); load it with AutoModelForSequenceClassification instead"
        )
    if not replace and getattr(model, "addrop_hook", None) is not None:
        raise UsageError(
            "attach_addrop: this model already has AD-DROP attached; reuse that handle, call "
            "its detach() first, or pass replace=True"
        )


def check_seed(seed: Any, generator: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(
            f"attach_addrop: seed must be an integer from 0 to 2**64 - 1, got {seed!r}"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise UsageError(
            f"attach_addrop: generator must be a torch.Generator or None, got "
            f"{type(generator).__name__}; or leave it out and pass seed="
        )


def check_epoch(epoch: Any) -> None:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise UsageError(
            f"set_epoch: epoch must be a 0-based integer (0, 1, 2, ...), got {epoch!r}; "
            "pass the loop's counter, e.g. set_epoch(int(epoch))"
        )


def check_batch(batch: Any) -> None:
    if not isinstance(batch, Mapping):
        raise UsageError(
            f"step: batch must be a dict of tensors, got {type(batch).__name__}; pass "
            "{**tokenizer(texts, padding=True, return_tensors='pt'), 'labels': labels}"
        )
    missing = [key for key in ("input_ids", "labels") if key not in batch]
    if missing:
        raise UsageError(
            f"step: the batch has no {' or '.join(repr(k) for k in missing)} (keys: "
            f"{', '.join(map(str, batch)) or 'none'}); AD-DROP needs the model inputs and the "
            "labels, add batch['labels'] = labels"
        )
