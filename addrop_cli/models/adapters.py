"""LoRA adapters through Hugging Face ``peft``: wrap a loaded classifier, count what trains,
save and load the adapter, merge it for export.

``train.adapter`` (:class:`~addrop_cli.models.config.AdapterSpec`) turns a run into adapter
training: :func:`apply_adapter` wraps the model in a ``PeftModel`` (task ``SEQ_CLS``) whose only
trainable parameters are the LoRA matrices of the target Linear modules (the family's query and
value projections by default, :attr:`~addrop_cli.models.families.Family.lora_targets`) and the
task head, trained in full (``modules_to_save``: the family's
:attr:`~addrop_cli.models.families.Family.head_modules`). Every method's step and AD-DROP's
hook see the wrapped model as they see any model: the attention modules sit inside it unchanged
(LoRA wraps the projections, not the attention computation). Written against peft 0.22.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from addrop_cli.errors import ModelError
from addrop_cli.models.config import AdapterSpec, ModelSpec
from addrop_cli.models.families import family_of
from addrop_cli.words import plural

ADAPTER_CONFIG = "adapter_config.json"
"""The file that makes a checkpoint folder an adapter (peft's name)."""


def is_adapted(model: nn.Module) -> bool:
    """Whether ``model`` is a peft model (a LoRA adapter around a transformers model)."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def lora_config(adapter: AdapterSpec, config: Any) -> Any:
    """The peft ``LoraConfig`` of ``adapter`` for a model of this transformers ``config``."""
    from peft import LoraConfig, TaskType

    family = family_of(config.model_type)
    targets = adapter.target_modules or list(family.lora_targets if family else ("query", "value"))
    heads = list(family.head_modules if family else ("classifier",))
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=adapter.rank,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=targets,
        modules_to_save=heads,
        fan_in_fan_out=config.model_type == "gpt2",  # GPT-2's Conv1D keeps weights transposed
    )


def apply_adapter(model: nn.Module, adapter: AdapterSpec | None) -> nn.Module:
    """``model`` wrapped in a LoRA adapter (or unchanged when ``adapter`` is None).

    The LoRA A matrices are drawn from the global generator (the caller seeds it); B starts at 0.
    A target module the model does not have is one :class:`ModelError` line.
    """
    if adapter is None:
        return model
    from peft import get_peft_model

    config = lora_config(adapter, model.config)
    if not model.__dict__.get("name_or_path"):  # built from a config: peft names no base then
        model.name_or_path = getattr(model.config, "_name_or_path", "")
    try:
        wrapped = get_peft_model(model, config)  # type: ignore[arg-type]
    except ValueError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"train.adapter.target_modules: {sorted(config.target_modules)} do not fit "
            f"{model.config.model_type} ({first[:160]}); name Linear modules of the model, "  # type: ignore[union-attr]
            "or leave target_modules out for the family's default"
        ) from err
    wrapped.addrop_adapter = adapter  # checkpoints read ``merge`` from here
    return wrapped


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; a LoRA model's total counts the frozen base and the copy
    of the head its ``modules_to_save`` keeps."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def planned_counts(config: Any, adapter: AdapterSpec | None) -> tuple[int, int]:
    """:func:`parameter_counts` of the model ``config`` describes, built on the meta device (no
    weights read or allocated): what ``--dry-run`` shows."""
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
        return parameter_counts(apply_adapter(model, adapter))


def parameters_line(model: ModelSpec, adapter: AdapterSpec | None, num_labels: int) -> str:
    """``--dry-run``'s line on what trains: ``trainable parameters of <model> (LoRA r=8): ...``."""
    from addrop_cli.models.loading import load_config

    what = f"LoRA r={adapter.rank}" if adapter else "full fine-tuning"
    where = Path(model.name_or_path).name or model.name_or_path
    try:
        trainable, total = planned_counts(load_config(model, num_labels=num_labels), adapter)
    except (ModelError, OSError, ValueError) as err:
        return f"trainable parameters of {where} ({what}): unknown ({err})"
    share = 100 * trainable / max(total, 1)
    return (
        f"trainable parameters of {where} ({what}, {plural(num_labels, 'label')}): "
        f"{trainable:,} of {total:,} ({share:.2f}%)"
    )


def exported(model: nn.Module, weights: dict[str, torch.Tensor] | None) -> nn.Module:
    """A plain transformers model with the adapter merged into the base weights (``weights``,
    a state dict of ``model``, loaded first when given); ``model`` itself is left as it is."""
    copied = copy.deepcopy(model)
    if weights is not None:
        copied.load_state_dict(weights)
    merged = copied.merge_and_unload()  # type: ignore[operator]
    return merged


def save_adapted(model: nn.Module, folder: Path, weights: dict[str, torch.Tensor] | None) -> None:
    """A peft model into ``folder``: its adapter (``save_pretrained``: adapter_config.json and
    adapter_model.safetensors, the head included) and the base model's config.json (labels,
    head size); with ``train.adapter.merge`` the merged model instead."""
    adapter: AdapterSpec | None = getattr(model, "addrop_adapter", None)
    if adapter is not None and adapter.merge:
        exported(model, weights).save_pretrained(folder, safe_serialization=True)
        return
    model.save_pretrained(folder, state_dict=weights, safe_serialization=True)  # type: ignore[operator]
    model.config.save_pretrained(folder)  # type: ignore[union-attr]


def load_classifier(folder: Path) -> nn.Module:
    """A checkpoint folder's sequence classifier: a plain transformers folder, or an adapter
    folder (:func:`save_adapted`) loaded onto the base model its adapter_config.json names."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if not (folder / ADAPTER_CONFIG).is_file():
        return AutoModelForSequenceClassification.from_pretrained(folder)
    from peft import PeftModel

    base_path = json.loads((folder / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    config = AutoConfig.from_pretrained(folder)
    base = AutoModelForSequenceClassification.from_pretrained(base_path, config=config)
    return PeftModel.from_pretrained(base, folder)
