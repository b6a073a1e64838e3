"""The model families AD-DROP supports (encoders and decoder-only classifiers), and how each one's
attention is hooked.

One :class:`Family` record per transformers ``model_type``; adding a family is one record here
(and a tiny config in the family test matrix). Two hook kinds exist:

``attention-function``
    The family's attention module calls transformers' attention-function registry
    (``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``). The model is switched to the
    function registered in :mod:`addrop_cli.models.attention_function`: untargeted layers keep
    the fused SDPA kernel, target layers compute attention explicitly only inside an AD-DROP
    pass. BERT, RoBERTa, ELECTRA, XLM-R, DistilBERT, ALBERT, ModernBERT.
``probability-tap``
    The family computes its softmax inline (DeBERTa's disentangled attention never consults the
    registry and has no SDPA path). The attention-probability dropout module called right after
    the softmax is replaced, in target layers only, by a tap
    (:mod:`addrop_cli.models.probability_tap`) that records, replaces or masks the probabilities.

Two families need more than a module per layer:

- ALBERT shares one attention module across all its layers, so a layer's index is the order of
  the call within the encoder's forward (a counter reset by a forward pre-hook on the encoder).
  ALBERT has no gradient checkpointing in transformers, which would replay calls out of order.
- ModernBERT alternates global attention with sliding-window (local) attention. AD-DROP ranks a
  row's keys among all real tokens, which a local row cannot see, so only its global layers
  (every ``global_attn_every_n_layers``-th, from 0) can be targeted; ``layers: all`` means those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from addrop_cli.errors import ModelError

HookKind = Literal["attention-function", "probability-tap"]


def _all_layers(config: Any) -> list[int]:
    return list(range(config.num_hidden_layers))


def _layer_count(config: Any) -> int:
    return config.num_hidden_layers


def _global_layers(config: Any) -> list[int]:
    """ModernBERT's (and Qwen's) full-attention layers."""
    kinds = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    return [i for i, kind in enumerate(kinds) if kind == "full_attention"]


_ENCODER_DROPOUT = {
    "hidden_dropout_prob": ("hidden_dropout_prob",),
    "attention_probs_dropout_prob": ("attention_probs_dropout_prob",),
}
_DECODER_DROPOUT = {
    "hidden_dropout_prob": (),
    "attention_probs_dropout_prob": ("attention_dropout",),
}
"""Llama-like decoders have attention dropout only (no hidden dropout to set)."""


@dataclass(frozen=True)
class Family:
    """How AD-DROP reaches one transformers model type's attention."""

    model_type: str
    label: str
    hook: HookKind
    attention_class: str
    """Class name of the module that computes one layer's attention probabilities."""
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    """What a stock (unhooked) model of this family is loaded with: its fastest exact path."""
    shared_layers: bool = False
    """One module serves several layers (ALBERT): the layer index is the call order."""
    targetable: Callable[[Any], list[int]] = _all_layers
    """The layers AD-DROP may target, from the model's config."""
    dropout_names: dict[str, tuple[str, ...]] = field(default_factory=lambda: _ENCODER_DROPOUT)
    """The dropout method's BERT-named rates -> this family's config keys."""
    position_offset: int = 0
    """Position ids taken before the first token (RoBERTa's start after the padding index)."""
    layer_path: str = "encoder.layer"
    """Where the encoder's list of layers lives, under the base model (``model.bert``)."""
    layer_count: Callable[[Any], int] = _layer_count
    """How many distinct layers (weights of their own) the model's config gives it."""
    compilable: bool = False
    """``train.compile`` compiles its dense blocks, matching the eager step (tests/test_methods)."""
    causal: bool = False
    """Decoder-only: causal attention, the head pools the last non-padding token."""
    lora_targets: tuple[str, ...] = ("query", "value")
    """The Linear modules a LoRA adapter wraps by default (the LoRA paper's W_q and W_v)."""
    head_modules: tuple[str, ...] = ("classifier",)
    """Modules an adapter run trains in full (newly initialised for the task)."""
    note: str = ""

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        """The attention modules in layer order (once each, even when shared)."""
        return [m for m in model.modules() if type(m).__name__ == self.attention_class]

    def encoder(self, model: nn.Module) -> nn.Module:
        """The module whose forward runs the layers (counter reset for shared layers)."""
        base = getattr(model, model.base_model_prefix, model)
        return base.encoder


def _decoder(model_type: str, label: str, attention_class: str) -> Family:
    """A Llama-like decoder: ``model.layers``, q/k/v/o projections, a ``score`` head."""
    return Family(
        model_type,
        label,
        "attention-function",
        attention_class,
        targetable=_global_layers,
        layer_path="layers",
        causal=True,
        lora_targets=("q_proj", "v_proj"),
        head_modules=("score",),
        dropout_names=_DECODER_DROPOUT,
        note="decoder: causal; pools the last non-padding token",
    )


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family("bert", "BERT", "attention-function", "BertSelfAttention", compilable=True),
        Family(
            "roberta",
            "RoBERTa",
            "attention-function",
            "RobertaSelfAttention",
            position_offset=2,
            compilable=True,
        ),
        Family("electra", "ELECTRA", "attention-function", "ElectraSelfAttention", compilable=True),
        Family(
            "xlm-roberta",
            "XLM-R",
            "attention-function",
            "XLMRobertaSelfAttention",
            position_offset=2,
            compilable=True,
        ),
        Family(
            "distilbert",
            "DistilBERT",
            "attention-function",
            "DistilBertSelfAttention",
            layer_path="transformer.layer",
            lora_targets=("q_lin", "v_lin"),
            head_modules=("pre_classifier", "classifier"),
            dropout_names={
                "hidden_dropout_prob": ("dropout",),
                "attention_probs_dropout_prob": ("attention_dropout",),
            },
        ),
        Family(
            "albert",
            "ALBERT",
            "attention-function",
            "AlbertAttention",
            shared_layers=True,
            layer_path="encoder.albert_layer_groups",
            layer_count=lambda config: config.num_hidden_groups,
            note="layers share weights: layer index = call order",
        ),
        Family(
            "modernbert",
            "ModernBERT",
            "attention-function",
            "ModernBertAttention",
            targetable=_global_layers,
            layer_path="layers",
            lora_targets=("Wqkv",),
            head_modules=("head", "classifier"),
            dropout_names={
                "hidden_dropout_prob": ("mlp_dropout", "embedding_dropout"),
                "attention_probs_dropout_prob": ("attention_dropout",),
            },
            note="global-attention layers only (local ones are sliding-window)",
        ),
        Family(
            "deberta-v2",
            "DeBERTa-v2/v3",
            "probability-tap",
            "DisentangledSelfAttention",
            attn_implementation="eager",
            lora_targets=("query_proj", "value_proj"),
            head_modules=("pooler", "classifier"),
            note="disentangled attention: tap on the softmax output",
        ),
        Family(
            "deberta",
            "DeBERTa",
            "probability-tap",
            "DisentangledSelfAttention",
            attn_implementation="eager",
            lora_targets=("in_proj",),
            head_modules=("pooler", "classifier"),
            note="disentangled attention: tap on the softmax output; no talking heads",
        ),
        Family(
            "gpt2",
            "GPT-2",
            "attention-function",
            "GPT2Attention",
            layer_path="h",
            causal=True,
            lora_targets=("c_attn",),
            head_modules=("score",),
            dropout_names={
                "hidden_dropout_prob": ("resid_pdrop", "embd_pdrop"),
                "attention_probs_dropout_prob": ("attn_pdrop",),
            },
            note="decoder: causal; pools the last non-padding token",
        ),
        *(
            _decoder(model_type, label, f"{prefix}Attention")
            for model_type, label, prefix in (
                ("llama", "Llama", "Llama"),
                ("qwen2", "Qwen2", "Qwen2"),
                ("qwen3", "Qwen3", "Qwen3"),
                ("mistral", "Mistral", "Mistral"),
                ("gemma", "Gemma", "Gemma"),
            )
        ),
    )
}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)


def family_of(model_type: str) -> Family | None:
    return FAMILIES.get(model_type)


def max_tokens(config: Any) -> int | None:
    """The longest input the model's position embeddings allow; None when it names no bound."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    family = family_of(config.model_type)
    return positions - (family.position_offset if family else 0)


def model_type_problem(config: Any, where: str) -> str | None:
    """One line when AD-DROP cannot hook this model type, naming the supported ones."""
    model_type = config.model_type
    if model_type in FAMILIES and not getattr(config, "talking_head", False):
        return None
    what = f"a {model_type!r} model" + (
        " with talking heads" if model_type in FAMILIES else ", which addrop does not support"
    )
    return (
        f"model.name_or_path: {where} is {what}; use a model of type "
        f"{', '.join(SUPPORTED_MODEL_TYPES)} (addrop list models)"
    )


def resolve_layers(layers: list[int] | str, config: Any) -> list[int]:
    """Layer indices, with ``"all"`` expanded to every layer AD-DROP can target in the model."""
    if layers == "all":
        family = family_of(config.model_type)
        return family.targetable(config) if family else _all_layers(config)
    if isinstance(layers, str):
        raise ModelError(f"layers: expected a list of indices or 'all', got {layers!r}")
    return sorted(layers)


def layer_problems(layers: list[int] | str, config: Any, where: str) -> list[str]:
    """One line per layer index the model does not have or AD-DROP cannot target."""
    if layers == "all":
        return []
    n = config.num_hidden_layers
    family = family_of(config.model_type)
    targetable = family.targetable(config) if family else _all_layers(config)
    problems = []
    for i in resolve_layers(layers, config):
        if i >= n or i < 0:
            problems.append(
                f"layers: index {i} is out of range for {where}, which has {n} layers; "
                f"use indices 0..{n - 1} or 'all'"
            )
        elif i not in targetable:
            problems.append(
                f"layers: layer {i} of {where} uses sliding-window attention, which AD-DROP "
                f"cannot target; use its global layers {targetable} or 'all'"
            )
    return problems


def dropout_overrides(model_type: str, rates: dict[str, object]) -> dict[str, object]:
    """BERT-named dropout rates renamed to the family's own config keys."""
    family = family_of(model_type)
    if family is None:
        return dict(rates)
    out: dict[str, object] = {}
    for key, value in rates.items():
        for name in family.dropout_names.get(key, (key,)):
            out[name] = value
    return out
