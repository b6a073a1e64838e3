"""Evaluation: predictions and mean task loss on the dev and selection splits, and their metrics.

Nothing is masked here: a method only changes training steps. The loss is recorded beside the
metrics so that curves show overfitting (the dev loss turning up) as the paper's Figure 2 does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from addrop_cli.data.batching import EvalBatches, TaskData
from addrop_cli.data.metrics import compute_metrics
from addrop_cli.data.tasks import TaskInfo
from addrop_cli.engine.devices import Autocast, to_device
from addrop_cli.methods.base import task_loss


@torch.no_grad()
def evaluate_split(
    model: torch.nn.Module,
    batches: EvalBatches,
    device: torch.device,
    autocast: Any,
    is_regression: bool,
    on_batch: Callable[[], None] | None = None,
) -> tuple[np.ndarray, float | None]:
    """Predictions for a whole split, in the split's order (class ids, or scores for regression),
    and the mean task loss over its labelled examples (None for an unlabelled split).
    ``on_batch`` is called after each batch (a progress bar)."""
    model.eval()
    outputs, loss_sum, counted = [], 0.0, 0
    for batch in batches:
        batch = to_device(batch, device)
        labels = batch.pop("labels", None)
        with autocast():
            logits = model(**batch).logits.float()
        outputs.append(logits.squeeze(-1) if is_regression else logits.argmax(-1))
        if labels is not None:
            loss_sum += task_loss(logits, labels, is_regression).item() * len(labels)
            counted += len(labels)
        if on_batch is not None:
            on_batch()
    predictions = batches.restore(torch.cat(outputs).cpu().numpy())
    return predictions, (loss_sum / counted if counted else None)


def predict_split(
    model: torch.nn.Module,
    batches: EvalBatches,
    device: torch.device,
    autocast: Any,
    is_regression: bool,
    on_batch: Callable[[], None] | None = None,
) -> np.ndarray:
    """Predictions for a whole split, in the split's order: class ids, or scores for regression."""
    return evaluate_split(model, batches, device, autocast, is_regression, on_batch)[0]


@dataclass
class Evaluation:
    """One evaluation: metrics and mean losses per split, and the dev predictions."""

    select: dict[str, float]
    dev: dict[str, float]
    select_loss: dict[str, float]
    dev_loss: dict[str, float]
    dev_predictions: dict[str, np.ndarray]


class Evaluator:
    """Evaluates a model on a run's dev splits and, when one was carved, its held-out split."""

    def __init__(
        self,
        task: TaskInfo,
        data: TaskData,
        batch_size: int,
        pad_token_id: int,
        device: torch.device,
        autocast: Autocast,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        self.task, self.data, self.device, self.autocast = task, data, device, autocast
        self.select_is_dev = set(data.select) == set(data.dev)

        def loaders(splits: dict) -> dict:
            return {
                name: EvalBatches(
                    split,
                    batch_size,
                    pad_token_id=pad_token_id,
                    pad_to_multiple_of=pad_to_multiple_of,
                )
                for name, split in splits.items()
            }

        self.dev_loaders = loaders(data.dev)
        self.select_loaders = self.dev_loaders if self.select_is_dev else loaders(data.select)

    def __call__(self, model: torch.nn.Module) -> Evaluation:
        dev, dev_loss, dev_preds = self._splits(model, self.dev_loaders, self.data.dev)
        if self.select_is_dev:
            select, select_loss = dev, dev_loss
        else:
            select, select_loss, _ = self._splits(model, self.select_loaders, self.data.select)
        model.train()
        return Evaluation(select, dev, select_loss, dev_loss, dev_preds)

    def _splits(
        self, model: torch.nn.Module, loaders: dict, splits: dict
    ) -> tuple[dict[str, float], dict[str, float], dict[str, np.ndarray]]:
        preds, losses = {}, {}
        for name, loader in loaders.items():
            preds[name], loss = evaluate_split(
                model, loader, self.device, self.autocast, self.task.is_regression
            )
            if loss is not None:
                losses[name] = round(loss, 6)
        labelled = {n: (p, np.asarray(splits[n].labels)) for n, p in preds.items()}
        return compute_metrics(self.task, labelled), losses, preds


@dataclass
class Best:
    """The best evaluation so far, its dev predictions and (when kept) the model's weights."""

    evaluation: Evaluation
    epoch: int
    step: int
    state: dict[str, torch.Tensor] | None = None
