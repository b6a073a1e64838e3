"""``addrop predict RESULTS --run ID --text ... | --file in.tsv``: label any text with a stored run.

The run's best checkpoint labels the texts through the same path as its dev evaluation (the
run's tokenizer, maximum length, batching and padding), so a dev sentence given as text gets the
label stored for it in ``predictions.json``. A sentence pair is written with a tab between its
two sentences. Output: one ``prediction<TAB>text`` line per input, to the terminal or ``--out``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from addrop_cli.data.batching import EvalBatches
from addrop_cli.data.config import DataSpec
from addrop_cli.data.encoding import encode_examples
from addrop_cli.data.examples import Example
from addrop_cli.data.tasks import TaskInfo, get_task
from addrop_cli.errors import AddropError, DataError, StoreError, one_line
from addrop_cli.store.atomic import atomic_write_text
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.reader import read_run


def read_examples(texts: Sequence[str], file: Path | None, task: TaskInfo) -> list[Example]:
    """The inputs as examples: each ``--text``, then each non-empty line of ``--file``; a pair
    task needs exactly one tab per input (sentence 1, tab, sentence 2)."""
    lines = [(f"--text {i + 1}", t) for i, t in enumerate(texts)]
    if file is not None:
        try:
            content = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{file}: cannot read it ({err}); give a UTF-8 text file") from err
        rows = content.splitlines()
        lines += [(f"{file}:{n}", row) for n, row in enumerate(rows, 1) if row.strip()]
    if not lines:
        raise DataError("nothing to predict: give --text 'a sentence' or --file inputs.txt")
    examples = []
    for where, line in lines:
        if "".join(line.splitlines()) != line:  # the output is one TSV line per input
            raise DataError(
                f"{where}: holds a line break, and the output has one line per input; give "
                "each line as its own --text (or a line of --file), or join them with a space"
            )
        parts = line.split("\t")
        if len(parts) != len(task.text_columns):
            wanted = " <TAB> ".join(task.text_columns)
            raise DataError(
                f"{where}: {task.display} takes {len(task.text_columns)} text(s) per input "
                f"({wanted}), got {len(parts)}; separate a pair's sentences with one tab"
            )
        if any(not part.strip() for part in parts):
            raise DataError(
                f"{where}: an empty text; give a sentence (empty lines of --file are skipped)"
            )
        second = parts[1] if task.is_pair else None
        examples.append(Example(f"input-{len(examples)}", parts[0], second, None))
    return examples


def load_checkpoint(run_dir: Path) -> tuple[Any, Any]:
    """The run's best model and tokenizer (its ``checkpoint/`` save_pretrained folder)."""
    folder = run_dir / "checkpoint"
    if not (folder / "config.json").is_file():
        raise StoreError(
            f"{run_dir}: no checkpoint/ with a config.json; run with train.save_checkpoint=true "
            "to keep the best model"
        )
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from addrop_cli.models.adapters import load_classifier

    hf_logging.disable_progress_bar()  # ours is the only progress shown
    with readable_checkpoint(folder):
        model = load_classifier(folder)  # a plain folder, or a LoRA adapter on its base
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return model.eval(), tokenizer


@contextmanager
def readable_checkpoint(where: Path) -> Iterator[None]:
    """Loading a checkpoint in the block: damage (a half-written or corrupt file) becomes one
    StoreError line naming ``where`` and the fix; our own one-line errors pass unchanged."""
    try:
        yield
    except AddropError:  # a base model that is missing (legacy checkpoints) says so already
        raise
    except Exception as err:  # noqa: BLE001 - damage shows as OSError, SafetensorError, ValueError
        first = one_line(err, limit=200)
        raise StoreError(
            f"{where}: the checkpoint cannot be loaded ({first}); delete the run folder and run "
            "it again"
        ) from err


def label_of(task: TaskInfo, value: float) -> str:
    return f"{float(value):.4f}" if task.is_regression else task.label_names[int(value)]


def predict_texts(
    run_dir: Path, texts: Sequence[str], file: Path | None, device: Any
) -> list[tuple[str, Example]]:
    """(label, example) for every input, predicted by the run's best checkpoint. Its progress
    bar goes to stderr, and only on a terminal: stdout may be the TSV (``> labels.tsv``)."""
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.engine.evaluation import predict_split

    record = read_run(run_dir)
    if record is None:
        raise StoreError(f"{run_dir}: no readable run.json; pass a run id `addrop status` lists")
    if record.status != "done":  # only a finished run has its best checkpoint
        raise StoreError(
            f"{run_dir}: the run is {record.status} ({record.reason}); only a done run predicts: "
            "finish it with `addrop run` on its spec (addrop status lists the done runs)"
        )
    config = record.config
    task = get_task(config.task, DataSpec.model_validate(config.data) if config.data else None)
    examples = read_examples(texts, file, task)
    model, tokenizer = load_checkpoint(run_dir)
    split = encode_examples(
        examples,
        tokenizer,
        int(config.train["max_length"]),  # run.json holds the resolved settings
        name="input",
        is_regression=task.is_regression,
    )
    batches = EvalBatches(
        split,
        int(config.train["eval_batch_size"]),
        pad_token_id=tokenizer.pad_token_id or 0,
        pad_to_multiple_of=config.train.get("pad_to_multiple_of"),
    )
    model.to(device)
    shown = Console(stderr=True)
    with Progress(console=shown, transient=True, disable=not shown.is_terminal) as progress:
        bar = progress.add_task(f"predicting {len(examples)} inputs", total=len(batches))
        preds = predict_split(
            model, batches, device, nullcontext, task.is_regression, lambda: progress.advance(bar)
        )
    return [(label_of(task, v), e) for v, e in zip(preds, examples, strict=True)]


def predict_text_command(
    results: Path,
    run_id: str | None,
    texts: Sequence[str],
    file: Path | None,
    *,
    out: Path | None,
    device: str,
    console: Console,
) -> int:
    """Label ``texts`` and the lines of ``file`` with run ``run_id`` of the results folder."""
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.engine.devices import pick_device

    if run_id is None:
        raise StoreError(
            f"{results}: --text and --file need --run ID (the run whose checkpoint predicts); "
            f"addrop status {results} --all lists the run ids"
        )
    run_id = ExperimentStore(results).find_run(run_id)  # a unique prefix is enough
    run_dir = results / "runs" / run_id
    rows = predict_texts(run_dir, texts, file, pick_device(device))
    lines = ["prediction\ttext"] + [
        f"{label}\t{e.text_a}" + (f"\t{e.text_b}" if e.text_b is not None else "")
        for label, e in rows
    ]
    if out is None:
        sys.stdout.write("\n".join(lines) + "\n")  # tab-separated as it is: pipes read it
    else:
        atomic_write_text(out, "\n".join(lines) + "\n")
        console.print(f"wrote {out} ({len(rows)} predictions from run {run_id})", highlight=False)
    return 0
