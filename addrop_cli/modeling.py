"""Load encoders and tokenizers, and hook AD-DROP into their attention.

The hook goes through transformers' attention-function registry: every layer of a hooked model
calls :func:`_addrop_attention`, which hands untargeted layers (and every layer outside an AD-DROP
pass) straight to the stock fused SDPA kernel, and computes attention explicitly only in the
target layers while an :class:`AttentionHook` asks for it (to expose the probabilities, apply a
drop mask, or replace the probabilities for integrated gradients).

transformers 5 builds the padding mask per attention implementation, so the registered name also
gets a mask builder: the stock SDPA one (boolean, True = attend). Untargeted layers therefore see
exactly the mask the stock ``sdpa`` model sees, and the explicit path turns it into an additive
mask with the score dtype's minimum.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AttentionInterface,
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from addrop_cli.errors import ModelError
from addrop_cli.spec import ModelSpec

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


def _load_config(model: ModelSpec, **kwargs: object):
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
    config = _load_config(model, **extra)
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
        config = _load_config(model)
    except ModelError as err:
        return err.problems
    problem = _model_type_problem(config.model_type, model.name_or_path)
    if problem:
        return [problem]
    if layers is None:
        return []
    return _layer_problems(layers, config.num_hidden_layers, model.name_or_path)


# --------------------------------------------------------------------------- the attention hook


def explicit_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    padding: torch.Tensor | None,
    scaling: float,
    drop: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention probabilities (B x H x T x T) with padding and dropped keys at exactly 0.

    ``padding`` is the boolean mask transformers built (True = attend), ``drop`` a boolean
    AD-DROP mask (True = drop). Masked logits get the dtype's minimum rather than -inf, so a
    fully masked row becomes uniform instead of NaN (AD-DROP never empties a real row).
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    lowest = torch.finfo(scores.dtype).min
    if padding is not None:
        scores = (
            scores.masked_fill(~padding, lowest)
            if padding.dtype == torch.bool
            else scores + padding.to(scores.dtype)
        )
    if drop is not None:
        scores = scores.masked_fill(drop, lowest)
    return F.softmax(scores, dim=-1)


class AttentionHook:
    """Per-model state that the registered attention function consults.

    Outside a :meth:`recording`, :meth:`masking` or :meth:`replacing` block every layer runs the
    stock SDPA kernel, so evaluation is never masked. Masks live only for the duration of a
    ``masking`` block, one boolean B x H x T x T tensor per target layer.
    """

    def __init__(self, layers: list[int]) -> None:
        self.layers = tuple(layers)
        self.mode: HookMode = "off"
        self.masks: dict[int, torch.Tensor] = {}
        self.replacements: dict[int, torch.Tensor] = {}
        self.probs: dict[int, torch.Tensor] = {}
        self.leaf_grad = False
        self.keep_probs = False
        """Tests and debugging: keep the last block's probabilities in ``probs`` afterwards."""
        self.explicit_all = False
        """Benchmarks only: run every layer explicitly, as the reference code does."""

    def _explicit(self, layer: int) -> bool:
        if self.mode == "off":
            return False
        if self.mode == "replace":
            return layer in self.replacements or self.explicit_all
        return layer in self.layers or self.explicit_all

    def attend(
        self,
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        padding: torch.Tensor | None,
        dropout: float,
        scaling: float | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The explicit attention of one layer, under the current mode."""
        layer = module.layer_idx
        if scaling is None:
            scaling = query.size(-1) ** -0.5
        probs = self.replacements.get(layer) if self.mode == "replace" else None
        if probs is None:
            drop = self.masks.get(layer) if self.mode == "mask" else None
            probs = explicit_attention(query, key, padding, scaling, drop)
            probs = F.dropout(probs, p=dropout, training=module.training)
            if layer in self.layers:
                if self.leaf_grad and not probs.requires_grad:
                    # Parameters are frozen in the attribution pass: the first target layer's
                    # probabilities become the leaf the gradient is taken to.
                    probs.requires_grad_(True)
                # Kept by reference only: autograd saves these probabilities anyway.
                self.probs[layer] = probs
        out = torch.matmul(probs.to(value.dtype), value)
        return out.transpose(1, 2).contiguous(), probs

    @contextmanager
    def _mode(self, mode: HookMode) -> Iterator[None]:
        self.mode = mode
        try:
            yield
        finally:
            self.mode = "off"
            self.masks = {}
            self.replacements = {}
            self.leaf_grad = False
            if not self.keep_probs:
                # The dict yielded by the block stays with its caller; the hook lets go of it
                # so no probabilities (and graph) outlive the step.
                self.probs = {}

    @contextmanager
    def recording(self, *, leaf_grad: bool = False) -> Iterator[dict[int, torch.Tensor]]:
        """Target layers run explicitly and keep their probabilities (after attention dropout)."""
        self.probs = {}
        self.leaf_grad = leaf_grad
        with self._mode("record"):
            yield self.probs

    @contextmanager
    def masking(self, masks: dict[int, torch.Tensor]) -> Iterator[dict[int, torch.Tensor]]:
        """Target layers drop the positions True in ``masks[layer]`` (the second pass).

        Yields the probabilities the target layers used (after attention dropout), for checks.
        """
        self.probs = {}
        with self._mode("mask"):
            self.masks = masks
            yield self.probs

    @contextmanager
    def replacing(self, replacements: dict[int, torch.Tensor]) -> Iterator[None]:
        """The given layers use these probabilities instead of their own (integrated gradients)."""
        with self._mode("replace"):
            self.replacements = replacements
            yield


def _addrop_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The registered attention function: stock SDPA unless the hook wants this layer."""
    hook: AttentionHook | None = getattr(module, "addrop_hook", None)
    if hook is None or not hook._explicit(module.layer_idx):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    return hook.attend(module, query, key, value, attention_mask, dropout, scaling)


def _register() -> None:
    AttentionInterface.register(ADDROP_ATTENTION, _addrop_attention)
    AttentionMaskInterface.register(ADDROP_ATTENTION, sdpa_mask)


def _self_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The encoder's self-attention modules (they carry ``layer_idx``)."""
    found = [
        m
        for name, m in model.named_modules()
        if name.endswith("attention.self") and hasattr(m, "layer_idx")
    ]
    return sorted(found, key=lambda m: m.layer_idx)


def attach_attention_hook(model: PreTrainedModel, layers: list[int] | str) -> AttentionHook:
    """Route ``model``'s attention through the AD-DROP hook for ``layers``.

    Refuses model types other than :data:`SUPPORTED_MODEL_TYPES` and layer indices beyond the
    model's depth with a one-line :class:`ModelError`. A model carries one hook at a time
    (``model.addrop_hook``); attaching again replaces it.
    """
    config = model.config
    where = getattr(config, "_name_or_path", "") or config.model_type
    problem = _model_type_problem(config.model_type, where)
    if problem:
        raise ModelError(problem)
    problems = _layer_problems(layers, config.num_hidden_layers, where)
    if problems:
        raise ModelError(*problems)
    modules = _self_attention_modules(model)
    if [m.layer_idx for m in modules] != list(range(config.num_hidden_layers)):
        raise ModelError(
            f"model: {where}: could not find one self-attention module per layer; "
            "this transformers version lays the model out differently than addrop expects"
        )
    _register()
    hook = AttentionHook(resolve_layers(layers, config.num_hidden_layers))
    for module in modules:
        module.addrop_hook = hook
    model.addrop_hook = hook
    model.set_attn_implementation(ADDROP_ATTENTION)
    return hook
