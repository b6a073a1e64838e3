"""R-Drop (Wu et al., NeurIPS 2021): two forward passes through the same dropout model, the task
loss of each, and a consistency term that pulls the two output distributions together.

Reference: github.com/dropreg/R-Drop at 9dcc8302eb9b0f112c38230864bbee807bbe1aa7,
``huggingface_transformer_src/src/transformers/models/bert/modeling_bert.py``
(``BertForSequenceClassification.bert_kl``) and the README's snippet; docs/methods.md says
where the two differ and which ``form`` is which.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from addrop_cli.methods.base import Method, StepOutput, model_inputs, task_loss
from addrop_cli.methods.config import RdropParams


def symmetric_kl(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(KL(second || first) + KL(first || second)) / 2, summed over the batch and the classes,
    as the authors' ``kl_div(..., reduction='none').sum()`` (fp32)."""
    log_p, log_q = F.log_softmax(first.float(), dim=-1), F.log_softmax(second.float(), dim=-1)
    forward = F.kl_div(log_p, log_q, reduction="sum", log_target=True)
    backward = F.kl_div(log_q, log_p, reduction="sum", log_target=True)
    return (forward + backward) / 2


def rdrop_loss(
    first: torch.Tensor,
    second: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    form: str,
    is_regression: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of the two passes' logits, and its consistency term (unweighted)."""
    tasks = task_loss(first, labels, is_regression) + task_loss(second, labels, is_regression)
    if form == "readme":
        tasks = tasks / 2
    if is_regression:  # the GLUE code: MSELoss between the two predictions, weight 1.0
        consistency = 2 * F.mse_loss(first.float().squeeze(-1), second.float().squeeze(-1))
    else:
        consistency = symmetric_kl(first, second)
    return tasks + alpha * consistency, consistency


class RdropMethod(Method):
    """Two passes with the model's dropout on; the loop back-propagates their joint loss once."""

    params: RdropParams

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        inputs = model_inputs(batch)
        first = model(**inputs).logits
        second = model(**inputs).logits  # another dropout draw from the same generator
        loss, consistency = rdrop_loss(
            first,
            second,
            batch["labels"],
            alpha=self.params.alpha,
            form=self.params.form,
            is_regression=self.is_regression,
        )
        self.stats.add(forward_passes=2, backward_passes=1, rdrop_consistency=consistency)
        return StepOutput(loss=loss, logits=first.detach())
