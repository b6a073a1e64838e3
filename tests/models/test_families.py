"""The family matrix: AD-DROP's hook on a tiny random model of every supported encoder family.

For each family: the hooked model with AD-DROP off is bit-identical to the stock model on padded
batches; the masked pass zeroes exactly the dropped keys and padding, rows sum to 1; gradient
attribution equals an independent autograd computation on the stock eager model; untargeted
layers stay on the stock (fast) path; detaching restores the stock model.
"""

from __future__ import annotations

import pytest
import torch
from family_models import padded_ids, stock_twin, target_layers, tiny_family_model
from transformers import AutoModelForSequenceClassification, OPTConfig

from addrop_cli.errors import ModelError
from addrop_cli.methods import addrop_ops as ops
from addrop_cli.methods.addrop import AddropMethod
from addrop_cli.methods.config import AddropParams
from addrop_cli.models import attention_function
from addrop_cli.models.attention import attach_attention_hook, detach_attention_hook
from addrop_cli.models.causal import allowed_keys
from addrop_cli.models.families import FAMILIES, SUPPORTED_MODEL_TYPES, max_tokens
from addrop_cli.models.hook import AttentionHook
from addrop_cli.models.probability_tap import ProbabilityTap

FAMILY_TYPES = list(FAMILIES)
LENGTHS = [9, 5, 2]
ABSOLUTE_POSITIONS = {"bert", "roberta", "electra", "xlm-roberta", "distilbert", "albert", "gpt2"}
"""Families with learned absolute position embeddings (the others are relative or rotary)."""


def heads(model: torch.nn.Module) -> int:
    return model.config.num_attention_heads


def close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal up to float rounding, relative to the (tiny) scale of attention gradients."""
    scale = float(expected.abs().max())
    assert scale > 0
    return torch.allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_hook_off_is_bit_identical_and_detach_restores(model_type: str) -> None:
    model = tiny_family_model(model_type).eval()
    stock = stock_twin(model)
    keys = set(model.state_dict())
    batch = padded_ids(model, LENGTHS)
    with torch.no_grad():
        expected = stock(**batch).logits
        attach_attention_hook(model, target_layers(model))
        assert torch.equal(model(**batch).logits, expected), "hooked, AD-DROP off: same numbers"
        assert set(model.state_dict()) == keys, "the hook adds no weights or buffers"
        detach_attention_hook(model)
        assert getattr(model, "addrop_hook", None) is None
        assert model.config._attn_implementation == FAMILIES[model_type].attn_implementation
        assert torch.equal(model(**batch).logits, expected)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_masked_pass_drops_exactly_the_mask_and_padding(model_type: str) -> None:
    model = tiny_family_model(model_type)
    layers = target_layers(model)
    hook = attach_attention_hook(model, layers)
    batch = padded_ids(model, LENGTHS)
    shape = (len(LENGTHS), heads(model), 9, 9)
    # the keys each row may attend to: real keys (encoders), own and earlier ones (decoders)
    keys = allowed_keys(model.config, batch["attention_mask"])
    may = ops.allowed(keys).expand(shape)
    rows = ops.real_rows(keys).expand(shape)
    stock = stock_twin(model).eval()
    model.eval()
    with torch.no_grad():
        none = {layer: torch.zeros(shape, dtype=torch.bool) for layer in layers}
        with hook.masking(none):
            explicit = model(**batch).logits
        assert torch.allclose(explicit, stock(**batch).logits, atol=1e-5), "explicit == stock"
        drop = torch.zeros(shape, dtype=torch.bool)
        drop[:, :, :, 0] = True
        drop[0, 1, 3, 2] = True
        drop &= rows & may & (may.sum(-1, keepdim=True) > 2)  # AD-DROP never empties a row
        assert drop.any()
        with hook.masking(dict.fromkeys(layers, drop)) as probs:
            logits = model(**batch).logits
    assert torch.isfinite(logits).all()
    for layer in layers:
        p = probs[layer]
        assert p.shape == shape
        assert torch.all(p[drop] == 0), "dropped positions are exactly 0"
        assert torch.all(p[~may & rows] == 0), "padding (and future) keys are exactly 0"
        sums = p.sum(-1)[rows[..., 0]]
        assert torch.allclose(sums, torch.ones(()), atol=1e-5), "real rows sum to 1"
        assert torch.all(p[may & rows & ~drop] > 0), "every other allowed key keeps weight"


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_gradient_attribution_matches_independent_autograd(model_type: str) -> None:
    model = tiny_family_model(model_type)
    layers = target_layers(model)
    method = AddropMethod(
        AddropParams(layers=layers, cross_tuning=False),
        is_regression=False,
        seed=0,
        device=torch.device("cpu"),
    )
    method.attach(model)
    batch = padded_ids(model, LENGTHS)
    labels = torch.tensor([0, 1, 2])
    scores, forwards, backwards = method.handle_for(model).attribution(batch, labels)
    assert (forwards, backwards) == (1, 1)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    # Independent: the stock eager model's attention probabilities, autograd to the pseudo logit.
    eager = stock_twin(model, impl="eager")
    out = eager(**batch, output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    pseudo = out.logits.argmax(-1)
    out.logits.gather(1, pseudo[:, None]).sum().backward()
    # Allowed keys only: AD-DROP never ranks padding (nor a decoder's future keys), and padding
    # tokens' hidden states differ between fused and eager kernels where a local window holds
    # no real key (ModernBERT).
    keys = allowed_keys(model.config, batch["attention_mask"])
    real = (ops.allowed(keys) & ops.real_rows(keys)).expand_as(scores[layers[0]])
    for layer in layers:
        assert scores[layer].shape == out.attentions[layer].shape
        assert close(scores[layer][real], out.attentions[layer].grad[real]), f"layer {layer}"


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_untargeted_layers_stay_on_the_stock_path(
    model_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit: list[int] = []
    fused: list[int] = []
    probabilities = AttentionHook.probabilities
    stock = attention_function.stock_attention

    def spy_probabilities(self, layer, *args, **kwargs):  # type: ignore[no-untyped-def]
        explicit.append(layer)
        return probabilities(self, layer, *args, **kwargs)

    def spy_stock(module, *args, **kwargs):  # type: ignore[no-untyped-def]
        fused.append(id(module))
        return stock(module, *args, **kwargs)

    monkeypatch.setattr(AttentionHook, "probabilities", spy_probabilities)
    monkeypatch.setattr(attention_function, "stock_attention", spy_stock)
    model = tiny_family_model(model_type)
    target = target_layers(model)[-1]
    hook = attach_attention_hook(model, [target])
    n = model.config.num_hidden_layers
    batch = padded_ids(model, [9, 6])
    with torch.no_grad():
        model(**batch)
        assert explicit == []
        with hook.recording() as probs:
            model(**batch)
    assert explicit == [target] and set(probs) == {target}
    assert hook.mode == "off", "the hook switches itself off after the block"
    family = FAMILIES[model_type]
    if family.hook == "attention-function":
        assert len(fused) == n + n - 1, "every call but the target's in the block is fused SDPA"
    else:
        modules = family.attention_modules(model)
        tapped = [i for i, m in enumerate(modules) if isinstance(m.dropout, ProbabilityTap)]
        assert tapped == [target], "untargeted layers run the stock module untouched"


def test_unsupported_model_type_names_the_supported_ones() -> None:
    opt = AutoModelForSequenceClassification.from_config(
        OPTConfig(
            num_hidden_layers=2, hidden_size=32, num_attention_heads=4, ffn_dim=48, vocab_size=100
        )
    )
    with pytest.raises(ModelError) as err:
        attach_attention_hook(opt, [0])
    (line,) = err.value.problems
    assert "opt" in line and all(t in line for t in SUPPORTED_MODEL_TYPES)


def test_modernbert_local_layers_are_refused_and_all_means_global() -> None:
    model = tiny_family_model("modernbert")
    with pytest.raises(ModelError, match="sliding-window"):
        attach_attention_hook(model, [1])
    assert attach_attention_hook(model, "all").layers == (0, 3)


def test_albert_shared_module_counts_layers_per_forward() -> None:
    model = tiny_family_model("albert")
    hook = attach_attention_hook(model, "all")
    batch = padded_ids(model, [9, 4])
    for _ in range(2):  # the counter restarts with every forward
        with torch.no_grad(), hook.recording() as probs:
            model(**batch)
        assert set(probs) == {0, 1, 2}
    assert not torch.equal(probs[0], probs[2]), "each layer call is its own layer"


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_max_tokens_is_the_longest_input_the_family_accepts(model_type: str) -> None:
    """The families table knows each family's position offset (RoBERTa's ids start after the
    padding index): ``max_tokens`` tokens run, and one more overflows an absolute-position
    model's embeddings."""
    model = tiny_family_model(model_type).eval()
    n = max_tokens(model.config)
    assert n is not None and n > 0
    with torch.no_grad():
        model(**padded_ids(model, [n], length=n))
        if model_type in ABSOLUTE_POSITIONS:
            with pytest.raises((IndexError, RuntimeError)):
                model(**padded_ids(model, [n + 1], length=n + 1))
