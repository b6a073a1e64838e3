"""The model settings: the spec's ``model:`` section, defined here so the models layer never
imports the spec (the spec's schema uses this model as it is)."""

from __future__ import annotations

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
