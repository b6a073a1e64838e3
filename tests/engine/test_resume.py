"""Long runs survive: training state, mid-epoch resume, Hugging Face checkpoints.

The identity tests kill a real `addrop run` with SIGKILL inside an epoch (between two state
writes: the kill_at fault point of tests/fault_points.py), resume it with a plain `addrop run`,
and compare what it stored with an uninterrupted run of the same seed: metrics, every logged
loss and the dev predictions must be identical (CPU, one thread). Marked ``resume``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from fault_helpers import (
    EPOCH_TIMING,
    SMOKE,
    TIMING,
    run_until_killed,
    smoke_args,
    start_addrop,
    without_timing,
)

from addrop_cli.errors import StoreError
from addrop_cli.methods.registry import METHODS
from addrop_cli.store.folders import RunFolder
from addrop_cli.store.state import TrainingStateFiles

STEPS_PER_EPOCH = 15  # the sample's 240 SST-2 sentences in batches of 16

pytestmark = pytest.mark.resume


VARIANTS = {
    # every registered method with its defaults: AD-DROP cross-tunes, R-Drop draws twice from
    # the global generator, Child-Tuning_D's Fisher mask is made before step 0 and restored
    **{name: "{}" for name in METHODS.names},
    "childtuning_f": "{method: childtuning, mode: f}",  # the mask generator's state
    # the settings: re-drawn top layer (before the initial state) and per-layer learning rates
    "addrop-reinit-llrd": "{method: addrop, train: {reinit_layers: 1, layer_lr_decay: 0.8}}",
    # mask draws from the global generator; targets re-made at setup (the re-drawn layer's too)
    "mixout-reinit": "{method: mixout, p: 0.3, train: {reinit_layers: 1}}",
}


def _only(variant: str, epochs: int) -> list[str]:
    return [*smoke_args([1], epochs), f"methods={{{variant}: {VARIANTS[variant]}}}"]


def _stored(results: Path) -> tuple[dict, list[dict], dict, Path]:
    (folder,) = [p for p in (results / "smoke" / "runs").iterdir() if p.is_dir()]
    assert (folder / "DONE").is_file()
    metrics = json.loads((folder / "metrics.json").read_text())
    epochs = [json.loads(line) for line in (folder / "epochs.jsonl").read_text().splitlines()]
    predictions = json.loads((folder / "predictions.json").read_text())
    return metrics, epochs, predictions, folder


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sigkill_mid_epoch_then_resume_ends_identical_to_an_uninterrupted_run(
    tmp_path: Path, variant: str
) -> None:
    """Epoch 1 is an AD-DROP epoch under cross-tuning (epochs 0 and 2 are plain): the kill at
    step 22 lands 7 batches into it, 2 steps after the last state (every 4 steps). The baseline
    run groups batches by length (its sampler draws from the global generator too)."""
    args = [*_only(variant, epochs=3), "train.checkpoint_every_steps=4"]
    if variant == "baseline":
        args.append("train.group_by_length=true")
    reference = start_addrop(tmp_path / "reference", args)
    assert reference.finish() == 0, reference.output()

    results = tmp_path / "killed"
    kill_at = STEPS_PER_EPOCH + 7
    folder = run_until_killed(results, args, kill_at=f"{variant}:{kill_at}")
    left = TrainingStateFiles(folder).load()
    assert left is not None and (left.step, left.epoch) == (20, 1)  # mid-epoch, before the kill

    resumed = start_addrop(results, args)
    assert resumed.finish() == 0, resumed.output()
    assert "resuming from step 20 (epoch 2)" in resumed.output()

    ref_metrics, ref_epochs, ref_predictions, _ = _stored(tmp_path / "reference")
    metrics, epochs, predictions, folder = _stored(results)
    assert without_timing(metrics, TIMING) == without_timing(ref_metrics, TIMING)
    assert [without_timing(e, EPOCH_TIMING) for e in epochs] == [
        without_timing(e, EPOCH_TIMING) for e in ref_epochs
    ]
    assert predictions == ref_predictions
    if variant == "addrop":
        assert [e["method"]["addrop_epoch"] for e in epochs] == [0.0, 1.0, 0.0]
    starts = RunFolder(folder).attempts()
    assert len(starts) == 2
    assert starts[0].endswith("step=0 epoch=1") and starts[1].endswith("step=20 epoch=2")
    assert not (folder / "state").exists()  # deleted once DONE (train.keep_state is false)


def test_a_corrupt_state_falls_back_to_the_previous_one_or_a_clean_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    states = TrainingStateFiles(tmp_path)
    states.write({"x": torch.arange(4)}, step=4, epoch=0)
    os.replace(tmp_path / "state", tmp_path / "keep")
    states.write({"x": torch.arange(8)}, step=8, epoch=0)
    os.replace(tmp_path / "keep", tmp_path / ".state.previous")  # as if killed mid-swap
    with open(tmp_path / "state" / "state.pt", "r+b") as f:  # one flipped byte in the latest
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with caplog.at_level(logging.WARNING):
        loaded = states.load()
    assert loaded is not None and loaded.step == 4
    assert torch.equal(loaded.payload["x"], torch.arange(4))
    assert "training state discarded" in caplog.text and not (tmp_path / "state").exists()

    (tmp_path / ".state.previous" / "manifest.json").write_text("{")  # half-written manifest
    (tmp_path / ".state.7.tmp").mkdir()  # a write a kill interrupted
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert states.load() is None
    assert "a clean start" in caplog.text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name open files")
def test_a_full_disk_while_writing_a_state_keeps_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults: Callable[..., None]
) -> None:
    states = TrainingStateFiles(tmp_path)
    states.write({"x": torch.arange(4)}, step=4, epoch=0)
    faults(disk_full="state.pt")
    with pytest.raises(StoreError) as caught:
        states.write({"x": torch.arange(8)}, step=8, epoch=0)
    monkeypatch.undo()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'state'}: disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # nothing half-written left
    loaded = states.load()
    assert loaded is not None and loaded.step == 4


def test_restart_starts_over_and_keep_state_keeps_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = [*_only("baseline", epochs=2), "train.keep_state=true"]
    first = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *args)
    assert first.code == 0, first.err
    (folder,) = [p for p in (tmp_path / "smoke" / "runs").iterdir() if p.is_dir()]
    assert TrainingStateFiles(folder).load() is not None  # kept: train.keep_state=true
    (folder / "DONE").unlink()  # as if the run had been killed before its end
    again = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *args, "--restart")
    assert again.code == 0, again.err
    assert "resuming" not in again.out
    assert RunFolder(folder).attempts()[-1].endswith("step=0 epoch=1")


def test_checkpoints_load_with_from_pretrained_and_carry_a_model_card(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    args = [*_only("baseline", epochs=2), "train.save_checkpoint=true", "train.save_last=true"]
    assert run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *args).code == 0
    (folder,) = [p for p in (tmp_path / "smoke" / "runs").iterdir() if p.is_dir()]
    metrics = json.loads((folder / "metrics.json").read_text())
    predictions = json.loads((folder / "predictions.json").read_text())["dev"]
    for name in ("checkpoint", "checkpoint-last"):
        model = AutoModelForSequenceClassification.from_pretrained(folder / name).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder / name)
        assert model.config.id2label == {0: "negative", 1: "positive"}
        card = (folder / name / "README.md").read_text()
        for fact in ("task: sst2", "method: baseline", "seed: 1", "accuracy"):
            assert fact in card, card
        if name == "checkpoint":  # the best model predicts what the run stored for dev
            texts = _dev_sentences(len(predictions["predictions"]))
            batch = tokenizer(
                texts, padding=True, truncation=True, max_length=32, return_tensors="pt"
            )
            with torch.no_grad():
                ids = model(**batch).logits.argmax(-1).tolist()
            assert ids == predictions["predictions"]
            assert f"{metrics['best']['dev']['accuracy']:.4f}" in card


def _dev_sentences(n: int) -> list[str]:
    lines = (SMOKE.parent / "sample" / "glue" / "SST-2" / "dev.tsv").read_text().splitlines()
    return [line.split("\t")[0] for line in lines[1 : n + 1]]


def test_a_signal_during_a_state_write_waits_until_the_state_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slurm's time-out signal makes submitit raise SystemExit from its handler; raised inside
    torch.save it broke the zip stream ("unexpected pos") and failed the run. Now the handler
    runs once the state is in place, and the state it leaves loads."""
    from addrop_cli.store import state as state_module

    states = TrainingStateFiles(tmp_path)
    calls: list[int] = []

    def exit_now(signum: int, _frame: object) -> None:
        calls.append(signum)
        raise SystemExit(-1)

    real_write = state_module._CrcWriter.write

    def signalled_write(self: object, data: bytes) -> int:
        if not calls and not getattr(self, "signalled", False):
            self.signalled = True  # type: ignore[attr-defined]
            signal.raise_signal(signal.SIGUSR2)  # as Slurm does, in the middle of the payload
        return real_write(self, data)  # type: ignore[arg-type]

    previous = signal.signal(signal.SIGUSR2, exit_now)
    try:
        monkeypatch.setattr(state_module._CrcWriter, "write", signalled_write)
        with pytest.raises(SystemExit):
            states.write({"x": torch.arange(1000)}, step=7, epoch=0)
    finally:
        monkeypatch.undo()
        assert signal.getsignal(signal.SIGUSR2) is exit_now  # the handler is put back
        signal.signal(signal.SIGUSR2, previous)
    assert calls == [signal.SIGUSR2]  # delivered once, after the write
    loaded = states.load()
    assert loaded is not None and loaded.step == 7
    assert torch.equal(loaded.payload["x"], torch.arange(1000))
