"""AD-DROP's guarantees on decoder-only classifiers (causal attention) and under LoRA adapters.

For tiny random decoders (GPT-2, Llama, Qwen2, Qwen3, Mistral with a binding window, Gemma) and
encoders (BERT, DeBERTa-v3), each bare and wrapped in a LoRA adapter whose B matrices are
non-zero (so the adapter changes the attention): the keys AD-DROP treats as a row's allowed ones
are exactly those the model's own eager attention gives weight to; the candidate region holds
``n - floor((1 - p) n)`` of a row's allowed keys, the highest-attributed ones (counted and ranked
here by plain Python); masks fall inside it only, each candidate dropped with probability q; and
gradient attribution equals an independent autograd computation on the merged eager model.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from family_models import padded_ids, stock_twin, target_layers, tiny_family_model

from addrop_cli.methods import addrop_ops as ops
from addrop_cli.methods.api import attach_addrop
from addrop_cli.methods.config import AddropConfig
from addrop_cli.models.adapters import apply_adapter, is_adapted
from addrop_cli.models.causal import allowed_keys
from addrop_cli.models.config import AdapterSpec

DECODERS = ["gpt2", "llama", "qwen2", "qwen3", "mistral", "gemma"]
ENCODERS = ["bert", "deberta-v2"]
CASES = [(t, lora) for t in DECODERS + ENCODERS for lora in (False, True)]
LENGTHS = [9, 6, 3]
P, Q = 0.4, 0.5


def built(model_type: str, lora: bool) -> torch.nn.Module:
    """The tiny model, in a LoRA adapter with random (non-zero) B matrices when ``lora``."""
    model = tiny_family_model(model_type)
    if not lora:
        return model
    adapted = apply_adapter(model, AdapterSpec(rank=4, dropout=0.0))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.5)
    return adapted.train()


def eager_twin(model: torch.nn.Module) -> torch.nn.Module:
    """An independent model computing the same function: the adapter merged into the weights
    (when there is one), on the stock eager attention, never hooked."""
    plain = copy.deepcopy(model).merge_and_unload() if is_adapted(model) else model
    return stock_twin(plain, impl="eager")


def eager_attention(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, ...]:
    twin = eager_twin(model).eval()
    with torch.no_grad():
        return twin(**batch, output_attentions=True).attentions


@pytest.mark.parametrize(("model_type", "lora"), CASES)
def test_allowed_keys_are_the_keys_the_models_attention_weighs(model_type: str, lora: bool) -> None:
    model = built(model_type, lora)
    batch = padded_ids(model, LENGTHS)
    keys = allowed_keys(model.config, batch["attention_mask"])
    may = (ops.allowed(keys) & ops.real_rows(keys))[:, 0]  # B x T x T
    for layer in target_layers(model):
        weighs = eager_attention(model, batch)[layer] > 0  # B x H x T x T
        rows = ops.real_rows(keys)[:, 0, :, 0]  # real query rows (padding rows are ignored)
        for h in range(weighs.shape[1]):
            assert torch.equal(weighs[:, h][rows], may[rows]), f"layer {layer} head {h}"


def python_region(
    scores: torch.Tensor, may: torch.Tensor, p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate region by plain Python: per row, the n - floor((1 - p) n) allowed keys with
    the highest scores (n: the row's allowed keys); and the rows whose region a tie at its edge
    leaves open (a row the pooled logit does not depend on has all-zero attribution)."""
    region = torch.zeros(scores.shape, dtype=torch.bool)
    tied = torch.zeros(scores.shape[:-1], dtype=torch.bool)
    b_, h_, t_, _ = scores.shape
    for b in range(b_):
        for h in range(h_):
            for i in range(t_):
                keys = [j for j in range(t_) if may[b, i, j]]
                n = len(keys)
                k = n - math.floor(round((1 - p) * n, 9))
                ranked = sorted(keys, key=lambda j: -float(scores[b, h, i, j]))
                region[b, h, i, ranked[:k]] = True
                edge = [float(scores[b, h, i, j]) for j in ranked[k - 1 : k + 1]]
                tied[b, h, i] = 0 < k < n and edge[0] == edge[1]
    return region, tied


@pytest.mark.parametrize(("model_type", "lora"), CASES)
def test_masks_drop_candidates_only_at_rate_q_and_attribution_is_autograd(
    model_type: str, lora: bool
) -> None:
    model = built(model_type, lora)
    twin = eager_twin(model)
    layers = target_layers(model)
    handle = attach_addrop(model, AddropConfig(p=P, q=Q, layers=layers, cross_tuning=False), seed=5)
    batch = padded_ids(model, LENGTHS)
    labels = torch.tensor([0, 1, 2])
    scores, _, _ = handle.attribution(batch, labels)
    keys = handle._key_real(batch)
    may = (ops.allowed(keys) & ops.real_rows(keys))[:, 0]
    # attribution: the merged eager model's attention probabilities, autograd to the pseudo logit
    out = twin(**batch, output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    out.logits.gather(1, out.logits.argmax(-1, keepdim=True)).sum().backward()
    for layer in layers:
        expected = out.attentions[layer].grad
        where = may[:, None].expand_as(expected)
        scale = float(expected[where].abs().max())
        assert torch.allclose(scores[layer][where], expected[where], rtol=1e-4, atol=1e-5 * scale)
    # the region and the masks drawn from it
    shape = scores[layers[0]].shape
    region, tied = python_region(scores[layers[0]], may, P)
    # padding query rows are never masked (drop_mask), so their region does not matter
    ours = ops.candidate_region(scores[layers[0]], keys, P) & ops.real_rows(keys)
    assert torch.equal(ours.sum(-1), region.sum(-1)), "candidate counts"
    assert (~tied).sum() > tied.sum(), "most rows are ranked without ties"
    assert torch.equal(ours[~tied], region[~tied])
    region = ours  # tied rows: the same count, the tie broken by topk
    draws = torch.stack(
        [handle.masks(scores, keys, shape)[layers[0]] for _ in range(300)]
    )  # 300 x B x H x T x T
    assert not (draws & ~region).any(), "a key outside the candidate region was dropped"
    lone = region.sum(-1, keepdim=True) == may[:, None].sum(-1, keepdim=True)
    counted = region & ~lone  # rows whose every key is a candidate may keep one back
    rate = draws[:, counted].float().mean()
    n = draws[:, counted].numel()
    assert abs(float(rate) - Q) < 4 * math.sqrt(Q * (1 - Q) / n), f"rate {float(rate):.4f}"
