"""Loading models and hooking AD-DROP into their attention (tiny models built from configs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    ElectraConfig,
    GPT2Config,
    PretrainedConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from addrop_cli.errors import ModelError
from addrop_cli.models import attention as modeling
from addrop_cli.models.attention import attach_attention_hook
from addrop_cli.models.loading import check_model, load_model_and_tokenizer, resolve_layers
from addrop_cli.spec.schema import ModelSpec

SIZES = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "vocab_size": 120,
    "max_position_embeddings": 64,
    "num_labels": 3,
}
ARCHITECTURES: dict[str, type[PretrainedConfig]] = {
    "bert": BertConfig,
    "roberta": RobertaConfig,
    "electra": ElectraConfig,
    "xlm-roberta": XLMRobertaConfig,
}


def tiny_model(model_type: str = "bert", **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ARCHITECTURES[model_type](**{**SIZES, **overrides})
    if model_type == "electra":
        config.embedding_size = 24
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")


def padded_batch(lengths: list[int], length: int = 9, pad: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (len(lengths), length), generator=g)
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    return {"input_ids": ids.masked_fill(mask == 0, pad), "attention_mask": mask}


def twin(model: torch.nn.Module) -> torch.nn.Module:
    """A stock SDPA copy of ``model`` with the same weights, never hooked."""
    other = AutoModelForSequenceClassification.from_config(
        model.config.__class__(**model.config.to_dict()), attn_implementation="sdpa"
    )
    other.load_state_dict(model.state_dict())
    return other.eval()


# ----------------------------------------------------------------------------- loading


def test_load_from_config_regression_and_overrides(tiny_bert_dir: Path) -> None:
    spec = ModelSpec(name_or_path=str(tiny_bert_dir), pretrained=False)
    model, tokenizer = load_model_and_tokenizer(
        spec, num_labels=1, is_regression=True, config_overrides={"hidden_dropout_prob": 0.3}
    )
    assert model.config.problem_type == "regression"
    assert model.config.num_labels == 1
    assert model.config.hidden_dropout_prob == 0.3
    assert model.config._attn_implementation == "sdpa"
    assert tokenizer("a b", return_tensors="pt")["input_ids"].shape[0] == 1


def test_load_missing_folder_is_one_line_model_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError) as err:
        load_model_and_tokenizer(
            ModelSpec(name_or_path=str(missing)), num_labels=2, is_regression=False
        )
    assert len(err.value.problems) == 1
    assert str(missing) in str(err.value) and ";" in str(err.value)


def test_load_folder_without_weights_says_how_to_fix(tiny_bert_dir: Path) -> None:
    with pytest.raises(ModelError, match="pretrained: false"):
        load_model_and_tokenizer(
            ModelSpec(name_or_path=str(tiny_bert_dir)), num_labels=2, is_regression=False
        )


def test_check_model(tiny_bert_dir: Path, tmp_path: Path) -> None:
    spec = ModelSpec(name_or_path=str(tiny_bert_dir), pretrained=False)
    assert check_model(spec, [0, 1]) == []
    assert check_model(spec, "all") == []
    assert check_model(spec, None) == []
    problems = check_model(spec, [1, 2, 7])
    assert len(problems) == 2 and all("out of range" in p for p in problems)
    GPT2Config(n_layer=2).save_pretrained(tmp_path / "gpt2")
    (problem,) = check_model(ModelSpec(name_or_path=str(tmp_path / "gpt2")), [0])
    assert "gpt2" in problem and "bert" in problem
    (problem,) = check_model(ModelSpec(name_or_path=str(tmp_path / "nothing")), [0])
    assert "does not exist" in problem
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text(json.dumps({"model_type": "bert"})[:-3])
    assert len(check_model(ModelSpec(name_or_path=str(tmp_path / "broken")), [0])) == 1


def test_resolve_layers() -> None:
    assert resolve_layers("all", 3) == [0, 1, 2]
    assert resolve_layers([2, 0], 3) == [0, 2]


# ----------------------------------------------------------------------------- the hook


def test_unsupported_model_and_out_of_range_layer_are_refused() -> None:
    gpt2 = AutoModelForSequenceClassification.from_config(
        GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100)
    )
    with pytest.raises(ModelError, match="gpt2"):
        attach_attention_hook(gpt2, [0])
    with pytest.raises(ModelError, match="out of range"):
        attach_attention_hook(tiny_model(), [3])


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_hooked_model_matches_stock_and_masks_padding(model_type: str) -> None:
    model = tiny_model(model_type, attention_probs_dropout_prob=0.0)
    stock = twin(model)
    hook = attach_attention_hook(model, [0, 2])
    model.eval()
    batch = padded_batch([9, 5, 2])
    with torch.no_grad():
        expected = stock(**batch).logits
        # Hook installed, AD-DROP off: the very same fused kernels, the very same numbers.
        assert torch.equal(model(**batch).logits, expected)
        # Target layers explicit, nothing dropped: the same model up to float rounding.
        no_drop = {layer: torch.zeros(3, 4, 9, 9, dtype=torch.bool) for layer in hook.layers}
        with hook.masking(no_drop) as probs:
            explicit = model(**batch).logits
    assert torch.allclose(explicit, expected, atol=1e-5)
    key_real = batch["attention_mask"].bool()
    for layer in (0, 2):
        p = probs[layer]
        assert torch.all(p[~key_real[:, None, None, :].expand_as(p)] == 0), "padding gets 0"
        assert torch.allclose(p.sum(-1), torch.ones(()), atol=1e-5)


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_masked_pass_zeroes_dropped_keys(model_type: str) -> None:
    model = tiny_model(model_type, attention_probs_dropout_prob=0.0)
    hook = attach_attention_hook(model, [1])
    batch = padded_batch([9, 4])
    drop = torch.zeros(2, 4, 9, 9, dtype=torch.bool)
    drop[:, :, :, 0] = True
    drop[0, 1, 3, 5] = True
    with hook.masking({1: drop}) as probs:
        logits = model(**batch).logits
    assert torch.isfinite(logits).all()
    assert torch.all(probs[1][drop] == 0)
    assert torch.all(probs[1][:, :, :, 1] > 0)


def test_only_target_layers_run_the_explicit_path(monkeypatch: pytest.MonkeyPatch) -> None:
    explicit: list[int] = []
    fused: list[int] = []
    attend = modeling.AttentionHook.attend
    sdpa = modeling.sdpa_attention_forward

    def spy_attend(self, module, *args, **kwargs):  # type: ignore[no-untyped-def]
        explicit.append(module.layer_idx)
        return attend(self, module, *args, **kwargs)

    def spy_sdpa(module, *args, **kwargs):  # type: ignore[no-untyped-def]
        fused.append(module.layer_idx)
        return sdpa(module, *args, **kwargs)

    monkeypatch.setattr(modeling.AttentionHook, "attend", spy_attend)
    monkeypatch.setattr(modeling, "sdpa_attention_forward", spy_sdpa)
    model = tiny_model()
    hook = attach_attention_hook(model, [1])
    batch = padded_batch([9, 6])
    with torch.no_grad():
        model(**batch)
    assert explicit == [] and fused == [0, 1, 2]
    fused.clear()
    with torch.no_grad(), hook.recording() as probs:
        model(**batch)
    assert explicit == [1] and fused == [0, 2]
    assert set(probs) == {1} and probs[1].shape == (2, 4, 9, 9)
    assert hook.mode == "off", "the hook switches itself off after the block"


def test_bf16_autocast_masks_exactly_and_stays_finite() -> None:
    model = tiny_model(attention_probs_dropout_prob=0.0)
    hook = attach_attention_hook(model, [0])
    batch = padded_batch([9, 2])
    drop = torch.zeros(2, 4, 9, 9, dtype=torch.bool)
    drop[:, :, :, 1] = True  # the two-token example keeps only its first key
    with torch.autocast("cpu", dtype=torch.bfloat16), hook.masking({0: drop}) as probs:
        logits = model(**batch).logits
    assert torch.isfinite(logits.float()).all()
    assert torch.all(probs[0][drop] == 0)
    real_row = batch["attention_mask"].bool()[1]
    assert torch.all(probs[0][1, :, real_row, 0] == 1)
