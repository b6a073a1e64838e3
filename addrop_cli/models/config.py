"""The model settings: the spec's ``model:`` section, defined here so the models layer never
imports the spec (the spec's schema uses this model as it is)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from addrop_cli.settings import Frozen


class ModelSpec(Frozen):
    """The pre-trained encoder: a Hub id or a local folder in the Hugging Face layout."""

    name_or_path: str = Field(min_length=1)
    tokenizer: str | None = Field(default=None, min_length=1)
    """Tokenizer Hub id or folder, when it differs from the model's."""
    pretrained: bool = True
    """False builds the model from its config with random weights (tests, smoke runs)."""
    revision: str | None = Field(default=None, min_length=1)


class AdapterSpec(Frozen):
    """A LoRA adapter (Hugging Face ``peft``): only the adapter and the task head train.

    LoRA (Hu et al., 2021) adds ``(alpha / rank) B A`` to each target Linear's weight, with A
    drawn at random and B = 0, so training starts from the pre-trained model.
    """

    kind: Literal["lora"] = "lora"
    rank: Annotated[int, Field(ge=1, le=4096)] = 8
    alpha: Annotated[float, Field(gt=0)] = 16.0
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    """Dropout on the adapter's input (peft's ``lora_dropout``)."""
    target_modules: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, min_length=1
    )
    """Names of the Linear modules to adapt; default: the family's query and value
    projections (``addrop list models`` shows them)."""
    merge: bool = False
    """Checkpoints hold the adapter merged into the base weights (a plain transformers model)
    instead of the adapter alone (``save_pretrained`` of the peft model)."""
