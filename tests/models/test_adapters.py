"""LoRA adapters as a training setting (``train.adapter``, peft): what trains, what validation
refuses, bit-identical resume, checkpoints that load again (plain, and merged for export), the
smoke spec, and the dry-run's parameter line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from datasets import Dataset
from family_models import tiny_family_model
from peft import get_peft_model
from resume_helpers import stopped_and_resumed, stored
from transformers import TrainingArguments

from addrop_cli.engine import loop
from addrop_cli.engine.checkpoints import save_checkpoint
from addrop_cli.methods.childtuning import fisher_information
from addrop_cli.methods.registry import METHODS
from addrop_cli.methods.trainer import AddropTrainer
from addrop_cli.models.adapters import ADAPTER_CONFIG, is_adapted, load_classifier, lora_config
from addrop_cli.models.config import AdapterSpec
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import RunSpec, expand

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
SMOKE_LORA = ROOT / "experiments" / "smoke-lora.yaml"
LORA = "train.adapter={rank: 4, alpha: 8, dropout: 0.1}"


def one_run(spec: Path, *overrides: str) -> RunSpec:
    base = ["tasks=[sst2]", "seeds=[1]", "train.threads=1", *overrides]
    runs = expand(load_spec(spec, base), spec.parent)
    assert len(runs) == 1
    return runs[0]


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_with_an_adapter_or_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    result = run_cli(capsys, "validate", SMOKE, LORA, f"methods={{x: {{method: {name}}}}}")
    why = METHODS[name].params().adapter_problem()
    if why is None:
        assert result.code == 0, result.err
        return
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert f"methods.x: {name} cannot train with train.adapter" in result.err and why in result.err


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("train.reinit_layers=1", "train.reinit_layers with train.adapter"),
        ("train.save_checkpoint=true", "set train.adapter.merge: true"),
    ],
)
def test_adapter_settings_that_cannot_work_are_refused(
    capsys: pytest.CaptureFixture[str], override: str, words: str
) -> None:
    result = run_cli(capsys, "validate", SMOKE, LORA, override)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 2, result.err  # 2 variants
    assert words in result.err
    merged = run_cli(capsys, "validate", SMOKE, LORA, override, "train.adapter.merge=true")
    assert (merged.code == 0) == (override == "train.save_checkpoint=true"), merged.err


def test_child_tuning_d_would_never_update_the_lora_a_matrices() -> None:
    """The reason Child-Tuning is refused: at the start (B = 0) every LoRA A matrix has zero
    gradient, so its Fisher information is 0 and D's mask would never keep it."""
    setup = loop.setup_run(one_run(SMOKE, LORA, "methods={b: {method: baseline}}"))
    loader = iter(setup.train_loader)
    batches = [loop.to_device(next(loader), setup.device) for _ in range(3)]
    fisher = fisher_information(setup.model, batches, is_regression=False)
    a_mats = {n: f for n, f in fisher.items() if "lora_A" in n}
    b_mats = {n: f for n, f in fisher.items() if "lora_B" in n}
    assert a_mats and all(float(f.abs().max()) == 0 for f in a_mats.values())
    assert any(float(f.abs().max()) > 0 for f in b_mats.values())


@pytest.mark.parametrize("model", ["assets/tiny-bert", "assets/tiny-llama"])
def test_an_adapter_run_trains_the_adapter_and_the_head_only(model: str) -> None:
    run = one_run(
        SMOKE_LORA, f"model.name_or_path={model}", "train.epochs=1", "factors={}",
        "methods={addrop: {method: addrop, layers: all, cross_tuning: false}}",
    )  # fmt: skip
    before = {k: v.clone() for k, v in loop.setup_run(run).model.state_dict().items()}
    outcome = loop.run_one(run)
    after = outcome.model.state_dict()
    trainable = {n for n, p in outcome.model.named_parameters() if p.requires_grad}
    assert is_adapted(outcome.model) and trainable
    for name, value in after.items():
        if name not in trainable:
            assert torch.equal(value, before[name]), f"{name} is frozen but changed"
    assert any("lora_B" in n and not torch.equal(after[n], before[n]) for n in trainable)
    assert any("modules_to_save" in n for n in trainable), "the head trains in full"
    count = sum(p.numel() for p in outcome.model.parameters() if p.requires_grad)
    metrics = outcome.metrics
    assert metrics.trainable_parameters == count < metrics.total_parameters


@pytest.mark.parametrize(
    ("model", "adapter"),
    [("assets/tiny-bert", LORA), ("assets/tiny-llama", LORA), ("assets/tiny-llama", None)],
)
def test_a_run_stopped_mid_epoch_resumes_bit_identically(
    model: str, adapter: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AD-DROP (with dropout in the adapter) on an encoder and a decoder, stopped after step 17
    (2 steps after its last state, in the AD-DROP epoch) and resumed from that state."""
    overrides = [f"model.name_or_path={model}", "train.epochs=2", "factors={}",
                 "train.checkpoint_every_steps=5",
                 "methods={addrop: {method: addrop}}"]  # fmt: skip
    run = one_run(SMOKE_LORA, *overrides, *([adapter] if adapter else ["train.adapter=null"]))
    reference, resumed, left = stopped_and_resumed(run, 17, tmp_path, monkeypatch)
    assert (left.step, left.epoch) == (15, 1)
    assert stored(resumed) == stored(reference)
    assert reference.epochs[1].method["addrop_epoch"] == 1  # AD-DROP ran in the resumed epoch


@pytest.mark.parametrize("merge", [False, True])
def test_checkpoints_hold_the_adapter_and_load_again(tmp_path: Path, merge: bool) -> None:
    # a pretrained base: the tiny random Llama saved with its weights
    base = loop.setup_run(one_run(SMOKE_LORA, "train.adapter=null", "factors={}",
                                  "model.name_or_path=assets/tiny-llama",
                                  "methods={b: {method: baseline}}"))  # fmt: skip
    base.model.save_pretrained(tmp_path / "base")
    base.tokenizer.save_pretrained(tmp_path / "base")
    run = one_run(
        SMOKE_LORA, f"model.name_or_path={tmp_path / 'base'}", "model.pretrained=true",
        "model.tokenizer=null", "train.epochs=1", "factors={}", f"train.adapter.merge={merge}",
        "methods={addrop: {method: addrop}}",
    )  # fmt: skip
    outcome = loop.run_one(run, keep_best_state=True)
    folder = save_checkpoint(
        tmp_path / "run" / "checkpoint", outcome.model, outcome.tokenizer, outcome.best_state, "#"
    )
    names = {p.name for p in folder.iterdir()}
    assert "config.json" in names and (ADAPTER_CONFIG in names) == (not merge)
    loaded = load_classifier(folder).eval()
    assert is_adapted(loaded) == (not merge)
    outcome.model.load_state_dict(outcome.best_state)
    batch = outcome.tokenizer(["a fine film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = outcome.model.eval()(**batch).logits
        got = loaded(**batch).logits
    assert torch.allclose(got, expected, atol=1e-6) and (merge or torch.equal(got, expected))


def test_the_smoke_spec_runs_and_records_trainable_parameters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan = run_cli(capsys, "run", SMOKE_LORA, "--dry-run", "--results", tmp_path)
    assert "trainable parameters of tiny-llama (LoRA r=4, 2 labels): 960 of 32,928" in plan.out
    done = run_cli(capsys, "run", SMOKE_LORA, "--plain", "--results", tmp_path, "train.epochs=2")
    assert done.code == 0, done.err + done.out
    seen = set()
    for folder in (tmp_path / "smoke-lora" / "runs").iterdir():
        if not folder.is_dir():
            continue
        metrics = json.loads((folder / "metrics.json").read_text())
        config = json.loads((folder / "run.json").read_text())
        assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"] / 10
        seen.add((Path(config["model"]["name_or_path"]).name, config["variant"]))
    assert seen == {(m, v) for m in ("tiny-bert", "tiny-llama") for v in ("baseline", "addrop")}


def test_the_trainer_runs_ad_drop_on_a_peft_decoder(tmp_path: Path) -> None:
    """The Trainer path (docs/adapters.md): AddropTrainer on a peft-wrapped decoder runs AD-DROP
    steps and updates the adapter and the head only."""
    base = tiny_family_model("llama")
    model = get_peft_model(base, lora_config(AdapterSpec(rank=4), base.config))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(5, 100, (16, 8), generator=torch.Generator().manual_seed(0))
    data = Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": [[1] * 8] * 16, "labels": [0, 1, 2, 0] * 4}
    )
    args = TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=8,
        report_to=[], use_cpu=True, logging_steps=2, save_strategy="no",
    )  # fmt: skip
    trainer = AddropTrainer(model=model, args=args, train_dataset=data, addrop={"p": 0.5, "q": 0.5})
    trainer.train()
    logged = [log for log in trainer.state.log_history if log.get("addrop_epoch") == 1]
    assert logged and logged[-1]["addrop_dropped_frac_l0"] > 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for name, value in model.state_dict().items():
        if name not in trainable:
            assert torch.equal(value, before[name]), f"{name} is frozen but changed"
