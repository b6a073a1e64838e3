"""Loading encoders and tokenizers, and checking a model before any run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from addrop_cli.errors import ModelError, one_line
from addrop_cli.models.families import (
    dropout_overrides,
    family_of,
    layer_problems,
    model_type_problem,
    resolve_layers,
)

if TYPE_CHECKING:
    from addrop_cli.models.config import ModelSpec

__all__ = [
    "check_model",
    "is_cached_or_local",
    "load_config",
    "load_model_and_tokenizer",
    "resolve_layers",
]

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
        first = one_line(err)
        raise ModelError(
            f"model.name_or_path: cannot load the config of {where} ({first}); "
            "check the folder holds config.json, or that the Hub id is right and reachable "
            "(HF_HUB_OFFLINE unset)"
        ) from err


def quiet_transformers() -> None:
    """No transformers log lines or progress bars in this process (a run's, or a prediction's):
    its "Loading weights" and "Writing model shards" bars are carriage-return lines that break
    --plain output and train.log, and its load reports are expected for fine-tuning."""
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
    """A sequence-classification model on its family's fastest exact attention path (SDPA;
    eager for DeBERTa, which has no other), and its tokenizer.

    ``config_overrides`` use BERT's dropout names (``hidden_dropout_prob``,
    ``attention_probs_dropout_prob``); they are renamed to the family's own keys.
    ``pretrained=False`` builds the model from its config with random weights; the caller seeds
    that initialisation with ``torch.manual_seed``.
    """
    quiet_transformers()  # every model this process builds, pretrained or not, and saves later
    extra: dict[str, object] = {"num_labels": num_labels}
    if is_regression:
        extra["problem_type"] = "regression"
    config = load_config(model, **extra)
    problem = model_type_problem(config, model.name_or_path)
    if problem:
        raise ModelError(problem)
    for key, value in dropout_overrides(config.model_type, config_overrides or {}).items():
        setattr(config, key, value)
    family = family_of(config.model_type)
    attn = family.attn_implementation if family else "sdpa"
    where = (
        str(Path(model.name_or_path).expanduser())
        if _is_local(model.name_or_path)
        else (model.name_or_path)
    )
    try:
        if model.pretrained:
            net = AutoModelForSequenceClassification.from_pretrained(
                where, config=config, revision=model.revision, attn_implementation=attn
            )
        else:
            net = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn)
    except (OSError, ValueError) as err:
        first = one_line(err)
        raise ModelError(
            f"model.name_or_path: cannot load the weights of {model.name_or_path} ({first}); "
            "check the folder holds model.safetensors or pytorch_model.bin, "
            "or set model.pretrained: false for a randomly initialised model"
        ) from err
    tok_where = model.tokenizer or where
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_where, revision=model.revision)
    except (OSError, ValueError, TypeError) as err:
        first = one_line(err)
        raise ModelError(
            f"model.tokenizer: cannot load a tokenizer from {tok_where} ({first}); "
            "put tokenizer.json / vocab files in the model folder or set model.tokenizer"
        ) from err
    if family is not None and family.causal:
        fit_decoder_tokenizer(net, tokenizer, tok_where)
    return net, tokenizer


def fit_decoder_tokenizer(
    net: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, where: str
) -> None:
    """A decoder classifier's tokenizer as its head expects it: a pad token (the end-of-text
    token where the tokenizer has none, the usual choice), padding on the right (addrop's
    batches are right-padded: every real token keeps position ids 0..n-1), the model's
    ``pad_token_id`` the one the batches use (the head pools the last token that is not it),
    and no token type ids (decoders take none)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(
                f"model.tokenizer: {where} has neither a pad nor an end-of-text token; give a "
                "tokenizer with a pad token (the decoder's head pools the last non-pad token)"
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    net.config.pad_token_id = tokenizer.pad_token_id
    names = list(getattr(tokenizer, "model_input_names", []) or [])
    tokenizer.model_input_names = [n for n in names if n != "token_type_ids"]


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
    problem = model_type_problem(config, model.name_or_path)
    if problem:
        return [problem]
    if layers is None:
        return []
    return layer_problems(layers, config, model.name_or_path)
