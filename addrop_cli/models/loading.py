"""Loading encoders and tokenizers, and checking a model before any run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from addrop_cli.errors import ModelError

if TYPE_CHECKING:  # models take the spec's ModelSpec but never import the spec at run time
    from addrop_cli.spec.schema import ModelSpec

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "electra", "xlm-roberta")
ADDROP_ATTENTION = "addrop"
"""The name the hook registers in transformers' attention and mask registries."""

HookMode = Literal["off", "record", "mask", "replace"]


# --------------------------------------------------------------------------- loading


def _is_local(name_or_path: str) -> bool:
    """A path the user meant as a folder (exists, or is written like a path)."""
    return (
        Path(name_or_path).expanduser().exists()
        or name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
    )


def load_config(model: ModelSpec, **kwargs: object):
    """AutoConfig with every failure turned into one ModelError line."""
    where = model.name_or_path
    if _is_local(where) and not Path(where).expanduser().is_dir():
        raise ModelError(
            f"model.name_or_path: folder {where} does not exist; "
            "give a Hugging Face model folder (config.json, weights, tokenizer) or a Hub id"
        )
    try:
        return AutoConfig.from_pretrained(
            str(Path(where).expanduser()) if _is_local(where) else where,
            revision=model.revision,
            **kwargs,
        )
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"model.name_or_path: cannot load the config of {where} ({first}); "
            "check the folder holds config.json, or that the Hub id is right and reachable "
            "(HF_HUB_OFFLINE unset)"
        ) from err


def _model_type_problem(model_type: str, where: str) -> str | None:
    if model_type in SUPPORTED_MODEL_TYPES:
        return None
    return (
        f"model.name_or_path: {where} is a {model_type!r} model, which addrop does not support; "
        f"use an encoder of type {', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_model_and_tokenizer(
    model: ModelSpec,
    *,
    num_labels: int,
    is_regression: bool,
    config_overrides: dict | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence-classification model on the SDPA attention path, and its tokenizer.

    ``pretrained=False`` builds the model from its config with random weights; the caller seeds
    that initialisation with ``torch.manual_seed``.
    """
    extra: dict[str, object] = {"num_labels": num_labels, **(config_overrides or {})}
    if is_regression:
        extra["problem_type"] = "regression"
    config = load_config(model, **extra)
    problem = _model_type_problem(config.model_type, model.name_or_path)
    if problem:
        raise ModelError(problem)
    where = (
        str(Path(model.name_or_path).expanduser())
        if _is_local(model.name_or_path)
        else (model.name_or_path)
    )
    try:
        if model.pretrained:
            # the new head's "MISSING" load report and the weights progress bar are expected
            # for fine-tuning; they would flood every run's log
            _quiet_transformers()
            net = AutoModelForSequenceClassification.from_pretrained(
                where, config=config, revision=model.revision, attn_implementation="sdpa"
            )
        else:
            net = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"model.name_or_path: cannot load the weights of {model.name_or_path} ({first}); "
            "check the folder holds model.safetensors or pytorch_model.bin, "
            "or set model.pretrained: false for a randomly initialised model"
        ) from err
    tok_where = model.tokenizer or where
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_where, revision=model.revision)
    except (OSError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"model.tokenizer: cannot load a tokenizer from {tok_where} ({first}); "
            "put tokenizer.json / vocab files in the model folder or set model.tokenizer"
        ) from err
    return net, tokenizer


def resolve_layers(layers: list[int] | str, num_layers: int) -> list[int]:
    """Layer indices, with ``"all"`` expanded to every layer of the model."""
    if layers == "all":
        return list(range(num_layers))
    if isinstance(layers, str):
        raise ModelError(f"layers: expected a list of indices or 'all', got {layers!r}")
    return sorted(layers)


def _layer_problems(layers: list[int] | str, num_layers: int, where: str) -> list[str]:
    if layers == "all":
        return []
    return [
        f"layers: index {i} is out of range for {where}, which has {num_layers} layers; "
        f"use indices 0..{num_layers - 1} or 'all'"
        for i in resolve_layers(layers, num_layers)
        if i >= num_layers or i < 0
    ]


def is_cached_or_local(model: ModelSpec) -> bool:
    """Whether the model's config can be read without the network (a folder, or the HF cache)."""
    if _is_local(model.name_or_path):
        return True
    try:
        AutoConfig.from_pretrained(
            model.name_or_path, revision=model.revision, local_files_only=True
        )
    except (OSError, ValueError, KeyError):
        return False
    return True


def check_model(model: ModelSpec, layers: list[int] | str | None) -> list[str]:
    """Cheap pre-flight (config only): unsupported model type, layer indices out of range."""
    try:
        config = load_config(model)
    except ModelError as err:
        return err.problems
    problem = _model_type_problem(config.model_type, model.name_or_path)
    if problem:
        return [problem]
    if layers is None:
        return []
    return _layer_problems(layers, config.num_hidden_layers, model.name_or_path)


# --------------------------------------------------------------------------- the attention hook
