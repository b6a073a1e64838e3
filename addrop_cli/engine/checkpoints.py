"""Checkpoints other tools can load: ``save_pretrained`` folders with tokenizer and model card.

``checkpoint/`` holds the best model (by the selection split's main metric) and, with
``train.save_last``, ``checkpoint-last/`` the model at the end of training. Each loads with
``AutoModelForSequenceClassification.from_pretrained(path)`` and ``AutoTokenizer``; its
README.md says what it is (task, method, seed, metric).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from addrop_cli.models.adapters import is_adapted, save_adapted
from addrop_cli.models.loading import quiet_transformers
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.store.atomic import atomic_folder
from addrop_cli.store.records import RunMetrics

BEST, LAST = "checkpoint", "checkpoint-last"


def model_card(run: RunSpec, metrics: RunMetrics, which: str) -> str:
    """A short Hugging Face model card: front matter plus what produced the weights."""
    main = metrics.main_metric
    scores = metrics.best if which == "best" else metrics.last
    epoch = f"epoch {metrics.best_epoch}, step {metrics.best_step}" if which == "best" else (
        f"the end of training ({metrics.epochs_run} epochs)"
    )  # fmt: skip
    params = ", ".join(f"{k}={v}" for k, v in run.params.model_dump(mode="json").items())
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [addrop, glue]",
        "---",
        f"# {run.task} / {run.variant} / seed {run.seed} ({which} model)",
        "",
        f"- task: {run.task}",
        f"- method: {run.params.method} ({params})",
        f"- seed: {run.seed}",
        f"- base model: {run.model.name_or_path}",
        f"- metric: dev {main} = {scores.dev[main]:.4f} (selected on {metrics.selection})",
        f"- weights: {which} model, from {epoch}",
        f"- run id: {run.run_id} (experiment {run.experiment})",
        "",
        "Fine-tuned with addrop. Load it with "
        "`AutoModelForSequenceClassification.from_pretrained(<this folder>)`.",
    ]
    return "\n".join(lines) + "\n"


def save_checkpoint(
    folder: Path,
    model: Any,
    tokenizer: Any,
    weights: dict[str, torch.Tensor] | None,
    card: str,
    label_names: list[str] | None = None,
) -> Path:
    """``model`` (with ``weights`` instead of its own, when given) saved with save_pretrained,
    its tokenizer and ``card`` as README.md, written whole or not at all."""
    if label_names:
        model.config.id2label = dict(enumerate(label_names))
        model.config.label2id = {name: i for i, name in enumerate(label_names)}
    quiet_transformers()  # its "Writing model shards" bar is not for --plain output
    with atomic_folder(folder) as tmp:
        if is_adapted(model):  # the adapter (and the base's config), or merged: models/adapters
            save_adapted(model, tmp, weights)
        else:
            model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return folder
