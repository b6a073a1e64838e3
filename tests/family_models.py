"""Tiny randomly initialised models of every supported family (encoders and decoders), built from
configs (no weights, no tokenizer), and right-padded batches of input ids for them."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from addrop_cli.models.families import FAMILIES

BERT_SIZES = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "vocab_size": 120,
    "max_position_embeddings": 64,
}
DECODER_SIZES = {
    **BERT_SIZES,
    "num_key_value_heads": 2,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
TINY_CONFIGS: dict[str, dict[str, object]] = {
    "bert": BERT_SIZES,
    "roberta": {**BERT_SIZES, "pad_token_id": 1},
    "electra": {**BERT_SIZES, "embedding_size": 24},
    "xlm-roberta": {**BERT_SIZES, "pad_token_id": 1},
    "distilbert": {
        "dim": 32,
        "n_layers": 3,
        "n_heads": 4,
        "hidden_dim": 48,
        "vocab_size": 120,
        "max_position_embeddings": 64,
    },
    "albert": {**BERT_SIZES, "embedding_size": 16},
    # 4 layers: 0 and 3 global, 1 and 2 local; a window of 4 keys so the local layers are local
    "modernbert": {
        **BERT_SIZES,
        "num_hidden_layers": 4,
        "local_attention": 4,
        "pad_token_id": 1,
        "bos_token_id": 2,
        "eos_token_id": 3,
        "cls_token_id": 2,
        "sep_token_id": 3,
    },
    # DeBERTa-v3's settings: relative attention with both disentangled terms, shared keys
    "deberta-v2": {
        **BERT_SIZES,
        "relative_attention": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_buckets": 16,
        "max_relative_positions": -1,
        "share_att_key": True,
        "norm_rel_ebd": "layer_norm",
    },
    "deberta": {**BERT_SIZES, "relative_attention": True, "pos_att_type": ["c2p", "p2c"]},
    "gpt2": {
        "n_embd": 32,
        "n_layer": 3,
        "n_head": 4,
        "n_inner": 48,
        "vocab_size": 120,
        "n_positions": 64,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
    # Llama-like decoders: grouped-query attention (4 query heads share 2 key/value heads)
    "llama": DECODER_SIZES,
    "qwen2": DECODER_SIZES,
    "qwen3": {**DECODER_SIZES, "head_dim": 8},
    # a window of 4 keys, shorter than the batches, so the window binds
    "mistral": {**DECODER_SIZES, "sliding_window": 4},
    "gemma": {**DECODER_SIZES, "head_dim": 8},
}
assert set(TINY_CONFIGS) == set(FAMILIES), "every supported family needs a tiny config here"


def tiny_config(model_type: str, *, num_labels: int = 3, **overrides: object):  # type: ignore[no-untyped-def]
    """The family's tiny config with every dropout rate at 0 (both passes deterministic)."""
    config = AutoConfig.for_model(model_type, **TINY_CONFIGS[model_type], num_labels=num_labels)
    for key, value in config.to_dict().items():
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
            setattr(config, key, 0.0)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def tiny_family_model(
    model_type: str, *, impl: str | None = None, seed: int = 0, **overrides: object
) -> PreTrainedModel:
    """A seeded tiny model on the family's stock attention (or ``impl``), in train mode."""
    config = tiny_config(model_type, **overrides)
    torch.manual_seed(seed)
    attn = impl or FAMILIES[model_type].attn_implementation
    return AutoModelForSequenceClassification.from_config(config, attn_implementation=attn).train()


def stock_twin(model: PreTrainedModel, impl: str | None = None) -> PreTrainedModel:
    """A never-hooked copy of ``model`` with the same weights (stock or ``impl`` attention)."""
    attn = impl or FAMILIES[model.config.model_type].attn_implementation
    config = model.config.__class__.from_dict(model.config.to_dict())
    other = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn)
    other.load_state_dict(model.state_dict())
    return other.train(model.training)


def padded_ids(
    model: PreTrainedModel, lengths: list[int], length: int = 9, seed: int = 1
) -> dict[str, torch.Tensor]:
    """Random input ids, right-padded with the model's pad id, and the attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (len(lengths), length), generator=g)
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    pad = model.config.pad_token_id or 0
    return {"input_ids": ids.masked_fill(mask == 0, pad), "attention_mask": mask}


def target_layers(model: PreTrainedModel) -> list[int]:
    """Two layers AD-DROP can target in this model: its first and last targetable ones."""
    layers = FAMILIES[model.config.model_type].targetable(model.config)
    return sorted({layers[0], layers[-1]})
