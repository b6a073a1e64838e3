"""Loading models and hooking AD-DROP into their attention (tiny models built from configs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from family_models import tiny_family_model
from transformers import BertConfig, T5Config

from addrop_cli.errors import ModelError
from addrop_cli.models.attention import attach_attention_hook
from addrop_cli.models.config import ModelSpec
from addrop_cli.models.loading import check_model, load_model_and_tokenizer, resolve_layers


def tiny_model(**overrides: object) -> torch.nn.Module:
    return tiny_family_model("bert", **overrides)


def padded_batch(lengths: list[int], length: int = 9, pad: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (len(lengths), length), generator=g)
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    return {"input_ids": ids.masked_fill(mask == 0, pad), "attention_mask": mask}


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
    T5Config(num_layers=2).save_pretrained(tmp_path / "t5")  # GPT-2 is a supported decoder now
    (problem,) = check_model(ModelSpec(name_or_path=str(tmp_path / "t5")), [0])
    assert "t5" in problem and "bert" in problem
    (problem,) = check_model(ModelSpec(name_or_path=str(tmp_path / "nothing")), [0])
    assert "does not exist" in problem
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text(json.dumps({"model_type": "bert"})[:-3])
    assert len(check_model(ModelSpec(name_or_path=str(tmp_path / "broken")), [0])) == 1


def test_resolve_layers() -> None:
    config = BertConfig(num_hidden_layers=3)
    assert resolve_layers("all", config) == [0, 1, 2]
    assert resolve_layers([2, 0], config) == [0, 2]


# ----------------------------------------------------------------------------- the hook


def test_out_of_range_layer_is_refused() -> None:
    with pytest.raises(ModelError, match="out of range"):
        attach_attention_hook(tiny_model(), [3])


def test_bf16_autocast_masks_exactly_and_stays_finite() -> None:
    model = tiny_model()
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


def test_dropout_rates_reach_each_familys_own_config_keys(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    from family_models import tiny_config

    rates = {"hidden_dropout_prob": 0.3, "attention_probs_dropout_prob": 0.2}
    for model_type, hidden, attention in (
        ("distilbert", "dropout", "attention_dropout"),
        ("modernbert", "mlp_dropout", "attention_dropout"),
        ("deberta-v2", "hidden_dropout_prob", "attention_probs_dropout_prob"),
    ):
        tiny_config(model_type).save_pretrained(tmp_path / model_type)
        spec = ModelSpec(
            name_or_path=str(tmp_path / model_type), pretrained=False, tokenizer=str(tiny_bert_dir)
        )
        model, _ = load_model_and_tokenizer(
            spec, num_labels=2, is_regression=False, config_overrides=rates
        )
        assert getattr(model.config, hidden) == 0.3, model_type
        assert getattr(model.config, attention) == 0.2, model_type
        assert model.config._attn_implementation == (
            "eager" if model_type == "deberta-v2" else "sdpa"
        )
