"""AD-DROP as a library: the handle, the Trainer integration, and parity with the CLI's method."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from family_models import padded_ids, stock_twin, tiny_family_model
from lockstep import steps_in_lockstep
from transformers import TrainingArguments

import addrop_cli.methods as library
from addrop_cli.methods import AddropConfig, AddropTrainer, attach_addrop
from addrop_cli.methods.addrop import AddropMethod
from addrop_cli.methods.api import AddropStep

CPU = torch.device("cpu")


def labelled(model: torch.nn.Module, lengths: list[int], seed: int = 1) -> dict[str, torch.Tensor]:
    batch = padded_ids(model, lengths, seed=seed)
    batch["labels"] = torch.arange(len(lengths)) % model.config.num_labels
    return batch


def trainer_args(tmp_path: Path, **kw: object) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        save_strategy="no",
        dataloader_num_workers=0,
        **kw,  # type: ignore[arg-type]
    )


def test_public_names_are_listed_and_typed() -> None:
    assert set(library.__all__) >= {"AddropConfig", "attach_addrop", "AddropTrainer"}
    for name in library.__all__:
        assert getattr(library, name) is not None
    assert AddropConfig is library.AddropParams, "the CLI and the library share one config"
    assert attach_addrop.__annotations__["return"] == "AddropHandle"


def test_handle_enable_disable_detach_and_stats() -> None:
    model = tiny_family_model("bert")
    stock = stock_twin(model)
    handle = attach_addrop(model, AddropConfig(cross_tuning=False, p=0.5, q=0.5), seed=3)
    batch = labelled(model, [9, 6, 3])
    handle.disable()
    plain = handle.step(batch)
    assert not plain.addrop and plain.masks == {}
    assert torch.equal(plain.logits, stock(**padded_ids(model, [9, 6, 3])).logits)
    handle.enable()
    step = handle.step(batch)
    assert step.addrop and set(step.masks) == {0} and step.masks[0].any()
    assert step.stats["forward_passes"] == 2 and step.stats["backward_passes"] == 2
    stats = handle.take_stats()
    assert stats["forward_passes"] == pytest.approx(1.5), "one plain and one AD-DROP step"
    assert 0 < stats["dropped_frac_l0"] < 0.5
    assert handle.take_stats() == {}, "taking the statistics resets them"
    handle.detach()
    assert getattr(model, "addrop_hook", None) is None and not handle.active
    with torch.no_grad():
        assert torch.equal(model(**padded_ids(model, [9, 6, 3])).logits, plain.logits)


def test_cross_tuning_schedule_in_the_handle() -> None:
    model = tiny_family_model("bert")
    handle = attach_addrop(model)  # the paper's defaults: cross-tuning on
    assert [handle.active for _ in range(1)] == [False]
    ran = []
    for epoch in range(4):
        handle.set_epoch(epoch)
        ran.append(handle.step(labelled(model, [9, 4])).addrop)
    assert ran == [False, True, False, True]


def record_steps(handle) -> list[AddropStep]:  # type: ignore[no-untyped-def]
    seen: list[AddropStep] = []
    original = handle.step

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(original(*args, **kwargs))
        return seen[-1]

    handle.step = spy
    return seen


@pytest.mark.parametrize("attribution", ["gradient", "random"])
def test_trainer_and_cli_method_make_the_same_masks_and_losses(
    tmp_path: Path, attribution: str
) -> None:
    """Same weights, batches, seed and mask generator: the Trainer's compute_loss and the CLI's
    AddropMethod.training_step draw identical masks and give identical losses, step after step
    (parameters updated in between, attention dropout on: the global RNG is reseeded alike)."""
    config = AddropConfig(attribution=attribution, p=0.5, q=0.5, layers=[0, 2])
    ours = tiny_family_model("bert", attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.1)
    theirs = stock_twin(ours)
    method = AddropMethod(config, is_regression=False, seed=7, device=CPU)
    method.attach(ours)
    trainer = AddropTrainer(model=theirs, args=trainer_args(tmp_path, seed=7), addrop=config)
    trainer.addrop.set_epoch(1), method.on_epoch_start(1)  # an AD-DROP epoch for both
    cli_steps, trainer_steps = record_steps(method.handle), record_steps(trainer.addrop)
    optimisers = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (ours, theirs)]
    for i in range(3):
        batch = labelled(ours, [9, 7, 4, 2], seed=i)
        torch.manual_seed(100 + i)
        cli_loss = method.training_step(ours, dict(batch)).loss
        torch.manual_seed(100 + i)
        trainer_loss = trainer.compute_loss(theirs, dict(batch))
        assert torch.equal(cli_loss, trainer_loss), f"step {i}"
        for layer in (0, 2):
            assert torch.equal(cli_steps[i].masks[layer], trainer_steps[i].masks[layer])
        for loss, opt in zip((cli_loss, trainer_loss), optimisers, strict=True):
            loss.backward()
            opt.step()
            opt.zero_grad()
    assert not torch.equal(cli_steps[0].masks[0], cli_steps[1].masks[0]), "masks move on"


def test_trainer_runs_cross_tuning_and_logs_the_dropped_fraction(tmp_path: Path) -> None:
    model = tiny_family_model("bert")
    data = padded_ids(model, [9, 8, 6, 5, 4, 3, 9, 2], seed=5)
    rows = [
        {"input_ids": ids, "attention_mask": mask, "labels": i % 3}
        for i, (ids, mask) in enumerate(zip(data["input_ids"], data["attention_mask"], strict=True))
    ]
    args = trainer_args(tmp_path, num_train_epochs=2, per_device_train_batch_size=4, seed=1)
    args.logging_steps = 1
    args.eval_strategy = "epoch"
    trainer = AddropTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        eval_dataset=rows[:4],
        addrop=AddropConfig(p=0.5, q=0.5),
    )
    steps = record_steps(trainer.addrop)
    trainer.train()
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    assert [log["addrop_epoch"] for log in train_logs] == [0.0, 0.0, 1.0, 1.0]
    assert all("addrop_dropped_frac_l0" in log for log in train_logs[2:])
    assert not any("addrop_dropped_frac_l0" in log for log in train_logs[:2])
    assert [s.addrop for s in steps] == [True, True], "AD-DROP ran in epoch 1 only, never in eval"
    assert any("eval_loss" in log for log in trainer.state.log_history)


def test_library_imports_nothing_from_spec_store_execution_engine_or_cli() -> None:
    import subprocess

    code = (
        "import sys; import addrop_cli.methods as m; m.attach_addrop; m.AddropTrainer; "
        "bad = [n for n in sys.modules if n.split('.')[:2] in "
        "[['addrop_cli', x] for x in ('spec', 'store', 'execution', 'engine', 'cli')]]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "config",
    [
        {"method": "rdrop", "alpha": 0.5},
        {"method": "baseline"},
        {"method": "childtuning", "mode": "d", "reserve": 0.3},
        {"method": "childtuning", "mode": "f", "reserve": 0.3},
    ],
)
def test_method_trainer_and_the_cli_method_give_the_same_losses(
    tmp_path: Path, config: dict
) -> None:
    """Any method in a Trainer: MethodTrainer's compute_loss and the CLI's training_step give
    identical losses on the same batches, step after step (dropout on, reseeded alike); the
    method's preparation pass and its gradient edit run on both sides where each calls them
    (the CLI's loop; the Trainer's train and its pre-optimiser-step callback)."""
    from addrop_cli.methods import MethodTrainer
    from addrop_cli.methods.registry import build_method
    from addrop_cli.methods.trainer import method_config

    ours = tiny_family_model("bert", attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.1)
    theirs = stock_twin(ours)
    method = build_method(method_config(config), is_regression=False, seed=7, device=CPU)
    trainer = MethodTrainer(model=theirs, args=trainer_args(tmp_path, seed=7), method=config)
    start = {n: p.detach().clone() for n, p in theirs.named_parameters()}
    fisher_batches = [labelled(ours, [9, 5, 3], seed=10 + i) for i in range(2)]
    torch.manual_seed(99)
    method.prepare(ours.train(), fisher_batches)
    torch.manual_seed(99)
    trainer.prepare_method(fisher_batches)
    batches = [labelled(ours, [9, 7, 4, 2], seed=i) for i in range(3)]
    steps_in_lockstep(method, ours, trainer, theirs, batches)
    assert trainer.method.epoch_stats()["forward_passes"] == (2.0 if "alpha" in config else 1.0)
    if config.get("mode") == "d":  # the Trainer's callback masked: SGD left those entries alone
        params = dict(theirs.named_parameters())
        for name, kept in trainer.method.mask.items():
            assert torch.equal(params[name][~kept], start[name][~kept]), name


def test_method_trainer_refuses_what_is_not_a_method(tmp_path: Path) -> None:
    from addrop_cli.errors import UsageError
    from addrop_cli.methods import MethodTrainer

    model = tiny_family_model("bert")
    with pytest.raises(UsageError, match="method must be a method's config"):
        MethodTrainer(model=model, args=trainer_args(tmp_path), method={"method": "magic"})
