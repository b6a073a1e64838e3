"""GLUE leaderboard files from stored checkpoints: `addrop predict`.

For each task of the spec, the finished run with a saved checkpoint and the best dev score (of the
chosen variant, or of the variant with the best mean) predicts the test split(s); AX is predicted
by the MNLI model. Files use the label names GLUE expects (``entailment``, ``1``, a 0-5 score) and
``provenance.json`` records which run made each file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np
from rich.console import Console

from addrop_cli.data.batching import EvalBatches
from addrop_cli.data.encoding import encode_split
from addrop_cli.data.tasks import TaskInfo, get_task, task_names
from addrop_cli.errors import EXIT_OK, StoreError
from addrop_cli.execution.inspection.predict_text import load_checkpoint, readable_checkpoint
from addrop_cli.models.location import located
from addrop_cli.spec.matrix import RunSpec, expand
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.store.atomic import atomic_write_json, atomic_write_text, fsync_dir
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.reader import read_run


def _finished_with_checkpoint(store: ExperimentStore, runs: list[RunSpec]) -> list[tuple]:
    """(run, its best dev main score) for every finished run that saved a checkpoint."""
    found = []
    for run in runs:
        folder = store.run(run.run_id)
        checkpoint = folder.path / "checkpoint" / "model.safetensors"
        record = read_run(folder.path) if checkpoint.exists() else None
        if record is None or record.metrics is None:
            continue
        found.append((run, record.metrics.best.dev[record.metrics.main_metric], checkpoint))
    return found


def choose_run(
    store: ExperimentStore, runs: list[RunSpec], task: str, variant: str | None
) -> tuple[RunSpec, float, Path]:
    """The run that predicts ``task``: best dev score within the variant (given, or best mean)."""
    candidates = [c for c in _finished_with_checkpoint(store, runs) if c[0].task == task]
    if variant is not None:
        candidates = [c for c in candidates if c[0].variant == variant]
    if not candidates:
        of = f" of {variant}" if variant else ""
        bare = [
            r
            for r in runs
            if r.task == task
            and (variant is None or r.variant == variant)
            and store.run(r.run_id).status == "done"
        ]
        if bare:  # save_checkpoint is not part of a run's identity: a rerun would skip them
            raise StoreError(
                f"{store.root}: the {len(bare)} finished {task} runs{of} kept no checkpoint, and "
                "running again skips finished runs; delete their folders (addrop status "
                f"{store.root} --all lists them) and run with train.save_checkpoint=true"
            )
        raise StoreError(
            f"{store.root}: no finished {task} run{of} with a checkpoint; run the spec first with "
            "train.save_checkpoint=true (addrop run SPEC train.save_checkpoint=true), and give "
            "predict the same --results"
        )
    if variant is None:
        by_variant: dict[str, list[float]] = {}
        for run, score, _ in candidates:
            by_variant.setdefault(run.variant, []).append(score)
        # metric direction: every GLUE main metric is higher-is-better
        best_variant = max(by_variant, key=lambda v: mean(by_variant[v]))
        candidates = [c for c in candidates if c[0].variant == best_variant]
    return max(candidates, key=lambda c: c[1])


def _load_trained(run: RunSpec, checkpoint: Path, task: Any) -> tuple[Any, Any]:
    """The saved model and tokenizer: a save_pretrained folder, or (runs stored before those)
    bare safetensors weights loaded into the run's base model."""
    folder = checkpoint.parent
    if (folder / "config.json").is_file():
        return load_checkpoint(folder.parent)
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from safetensors.torch import load_file

    from addrop_cli.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(
        located(run.model, run.base_dir),
        num_labels=task.num_labels,
        is_regression=task.is_regression,
    )
    with readable_checkpoint(checkpoint):
        model.load_state_dict(load_file(str(checkpoint)))
    return model.eval(), tokenizer


def leaderboard_lines(task: Any, predictions: np.ndarray, guids: list[str]) -> list[str]:
    """``index<TAB>prediction`` rows; the index is the example's position in the test file."""
    lines = ["index\tprediction"]
    for guid, value in zip(guids, predictions, strict=True):
        index = guid.rsplit("-", 1)[-1]
        if task.is_regression:
            label = f"{min(5.0, max(0.0, float(value))):.3f}"
        else:
            label = (
                task.file_labels[int(value)] if task.file_labels else task.label_names[int(value)]
            )
        lines.append(f"{index}\t{label}")
    return lines


def predict_command(
    spec: ExperimentSpec,
    spec_path: Path,
    *,
    out: Path | None,
    variant: str | None,
    results_root: Path | None = None,
    console: Console,
) -> int:
    """Write each task's leaderboard files from its chosen run's checkpoint, and provenance.json
    (which run, seed and dev score each file came from)."""

    store = ExperimentStore.located(spec.name, spec.results_dir, results_root)
    runs = expand(spec, spec_path.parent)
    out = out or store.root / "leaderboard"
    provenance: dict[str, Any] = {}
    with _staged_submission(out) as staging:
        for task_name in dict.fromkeys(r.task for r in runs):
            task = get_task(task_name, spec.data)
            if task.leaderboard_files:
                run, score, checkpoint = choose_run(store, runs, task_name, variant)
                provenance |= _predict_task(spec, task, run, score, checkpoint, staging)
        atomic_write_json(staging / "provenance.json", provenance)
    for filename, made in provenance.items():
        console.print(
            f"wrote {out / filename} ({made['rows']} rows) from run {made['run_id']} "
            f"({made['label']}, dev {made['dev_score']:.4f})",
            highlight=False,
        )
    return EXIT_OK


def _predict_task(
    spec: ExperimentSpec, task: Any, run: RunSpec, score: float, checkpoint: Path, out: Path
) -> dict[str, Any]:
    """One task's leaderboard files into ``out``, and their provenance entries."""
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.engine.devices import pick_device

    device = pick_device(spec.train.device)
    model, tokenizer = _load_trained(run, checkpoint, task)
    model.to(device)
    provenance = {}
    # the task's own test splits, and those of tasks scored with its model (AX with MNLI)
    targets = [task] + [get_task(n) for n in task_names() if get_task(n).eval_with == task.name]
    for target in targets:
        for split_name, filename in target.leaderboard_files.items():
            rows = _write_predictions(
                out / filename, target, split_name, run, model, tokenizer, device, spec
            )
            provenance[filename] = {
                "run_id": run.run_id,
                "task": run.task,
                "variant": run.variant,
                "seed": run.seed,
                "label": run.label,
                "dev_score": score,
                "rows": rows,
            }
    return provenance


@contextmanager
def _staged_submission(out: Path) -> Iterator[Path]:
    """A folder beside ``out`` that the block writes the submission into; its files move into
    ``out`` only once every one is written (provenance.json last), so an interrupted or failed
    prediction leaves ``out`` as it was, never a partial submission that looks complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield staging
        out.mkdir(exist_ok=True)
        for name in sorted(os.listdir(staging), key=lambda name: name == "provenance.json"):
            os.replace(staging / name, out / name)
        fsync_dir(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_predictions(
    path: Path,
    target: TaskInfo,
    split_name: str,
    run: RunSpec,
    model: Any,
    tokenizer: Any,
    device: Any,
    spec: ExperimentSpec,
) -> int:
    """Predict one test split with ``model`` and write its leaderboard file; returns the rows."""
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.engine.evaluation import predict_split

    split = encode_split(
        target, split_name, run.data, tokenizer, run.train.max_length, base_dir=run.base_dir
    )
    batches = EvalBatches(
        split, spec.train.eval_batch_size, pad_token_id=tokenizer.pad_token_id or 0
    )
    preds = predict_split(model, batches, device, nullcontext, target.is_regression)
    atomic_write_text(path, "\n".join(leaderboard_lines(target, preds, split.guids)) + "\n")
    return len(split)
