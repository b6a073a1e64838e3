"""Benchmark: addrop's baseline fine-tuning vs the transformers `Trainer`, same everything.

Same model, the same 1,000 SST-2 training sentences (or the bundled sample with --quick), the
same seed, batch size, learning rate, constant schedule, weight decay and epochs. Prints each
side's dev accuracy and seconds per epoch, and the ratio. This is a benchmark, not a test: the
numbers depend on the machine, so compare them only within one run of this script.

    python bench/bench_trainer.py            # MiniLM, SST-2 1,000 sentences, 2 epochs
    python bench/bench_trainer.py --quick    # tiny random BERT on the bundled sample
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from addrop_cli.engine.loop import run_one  # noqa: E402
from addrop_cli.spec.load import load_spec  # noqa: E402
from addrop_cli.spec.matrix import expand  # noqa: E402


def addrop_side(spec_path: Path, overrides: list[str]) -> dict:
    spec = load_spec(spec_path, overrides)
    run = next(r for r in expand(spec, spec_path.parent) if r.variant == "baseline")
    outcome = run_one(run)
    times = [e.epoch_time_s for e in outcome.epochs]
    return {
        "dev_accuracy": outcome.metrics.last.dev["accuracy"],
        "epoch_s": float(np.median(times)),
        "run": run,
    }


def trainer_side(run) -> dict:  # type: ignore[no-untyped-def]
    """The standard recipe: Trainer with the same data, model and hyperparameters."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from addrop_cli.data.batching import prepare_task_data
    from addrop_cli.data.tasks import get_task
    from addrop_cli.models.loading import load_model_and_tokenizer
    from addrop_cli.models.location import located

    task = get_task(run.task, run.data)
    torch.manual_seed(run.seed)
    model, tokenizer = load_model_and_tokenizer(
        located(run.model, run.base_dir), num_labels=task.num_labels, is_regression=False
    )
    data = prepare_task_data(task, run.data, tokenizer, run.train.max_length, run.seed)

    def rows(split):  # type: ignore[no-untyped-def]
        out = []
        for i in range(len(split)):
            row = {"input_ids": split.input_ids[i], "labels": int(split.labels[i])}
            if split.token_type_ids is not None:
                row["token_type_ids"] = split.token_type_ids[i]
            out.append(row)
        return out

    train_rows, dev_rows = rows(data.train), rows(data.dev["dev"])
    with tempfile.TemporaryDirectory() as out_dir:
        args = TrainingArguments(
            output_dir=out_dir,
            per_device_train_batch_size=run.train.batch_size,
            per_device_eval_batch_size=run.train.eval_batch_size,
            learning_rate=run.train.lr,
            lr_scheduler_type="constant",
            weight_decay=run.train.weight_decay,
            num_train_epochs=run.train.epochs,
            seed=run.seed,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_rows,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        # Trainer's own train_runtime: training only, like addrop's epoch_time_s
        train_s = trainer.train().metrics["train_runtime"]
        predictions = trainer.predict(dev_rows)
    accuracy = float((predictions.predictions.argmax(-1) == predictions.label_ids).mean())
    return {"dev_accuracy": accuracy, "epoch_s": train_s / run.train.epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model on the bundled sample")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    common = [f"seeds=[{args.seed}]", f"train.epochs={args.epochs}", "train.patience=null"]
    if args.quick:
        spec_path = ROOT / "experiments" / "smoke.yaml"
        overrides = ["tasks=[sst2]", *common]
    else:
        spec_path = ROOT / "experiments" / "quickstart.yaml"
        overrides = common
    ours = addrop_side(spec_path, overrides)
    theirs = trainer_side(ours["run"])
    print(f"model: {ours['run'].model.name_or_path}  task: sst2  epochs: {args.epochs}")
    print(f"{'':22}{'dev accuracy':>14}{'s / epoch':>12}")
    print(f"{'addrop baseline':22}{ours['dev_accuracy']:>14.4f}{ours['epoch_s']:>12.2f}")
    print(f"{'transformers Trainer':22}{theirs['dev_accuracy']:>14.4f}{theirs['epoch_s']:>12.2f}")
    print(f"epoch time ratio addrop / Trainer: {ours['epoch_s'] / theirs['epoch_s']:.2f}x")
    print(f"dev accuracy difference: {ours['dev_accuracy'] - theirs['dev_accuracy']:+.4f}")


if __name__ == "__main__":
    main()
