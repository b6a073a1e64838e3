"""One training run, start to finish: :func:`run_one`.

The loop is explicit and reads top to bottom: seed, load, prepare data, optimise with the
method's training step, evaluate after each epoch (and optionally every N steps), stop early on
the task's main metric, and hand back the best and last metrics. It knows nothing about which
method it runs (the method does its own forward passes) nor where results go (the caller passes
an ``on_eval`` callback and stores what comes back).
"""

from __future__ import annotations

import logging
import math
import resource
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from addrop_cli.engine.progress import StepProgress
from addrop_cli.errors import RunError
from addrop_cli.models.location import resolve_model_location
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.spec.schema import TrainSpec

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the run is recorded as failed."""


@dataclass
class RunOutcome:
    """What a finished run hands back to be stored."""

    metrics: dict[str, Any]
    predictions: dict[str, dict[str, list]]
    best_state: dict[str, torch.Tensor] | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)


Callback = Callable[[Any], None]


def pick_device(wanted: str) -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. An explicit device that is missing is an error."""
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RunError("train.device: cuda requested but no CUDA GPU is visible; use device=auto")
    if wanted == "mps" and not torch.backends.mps.is_available():
        raise RunError("train.device: mps requested but Apple MPS is not available; use auto")
    return torch.device(wanted)


def pick_precision(wanted: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32. Mixed precision only on GPUs."""
    if device.type != "cuda" or wanted == "fp32":
        return None
    if wanted == "fp16":
        return torch.float16
    if wanted == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def build_optimizer(model: torch.nn.Module, train: TrainSpec) -> torch.optim.AdamW:
    """AdamW with the usual no-decay group: biases and LayerNorm weights are not decayed."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lowered = name.lower()
        if param.ndim < 2 or "layernorm" in lowered or "layer_norm" in lowered:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # the fused kernel (one op for all parameters) is what transformers' Trainer uses by default;
    # it exists for CPU and CUDA tensors
    device = next(model.parameters()).device
    return torch.optim.AdamW(groups, lr=train.lr, fused=device.type in ("cpu", "cuda"))


def build_schedule(
    optimizer: torch.optim.Optimizer, train: TrainSpec, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """constant (the AD-DROP reference) or linear decay, each with optional linear warmup."""
    warmup = int(train.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if train.schedule == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_split(
    model: torch.nn.Module,
    loader: Any,
    device: torch.device,
    autocast: Callable[[], Any],
    is_regression: bool,
) -> np.ndarray:
    """Predictions for a whole split, in order: class ids, or scores for regression."""
    model.eval()
    outputs = []
    for batch in loader:
        batch = _to_device(batch, device)
        batch.pop("labels", None)
        with autocast():
            logits = model(**batch).logits.float()
        outputs.append(logits.squeeze(-1) if is_regression else logits.argmax(-1))
    return torch.cat(outputs).cpu().numpy() if outputs else np.zeros(0)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory and what it measures: CUDA tensors on a GPU, the process's RSS elsewhere."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process_max_rss"


def _compile(model: torch.nn.Module, device: torch.device) -> bool:
    """train.compile: compile the model in place; a family that cannot be says so in one line."""
    from addrop_cli.models.compiling import compile_model

    note = compile_model(model, device)  # type: ignore[arg-type]
    if note:
        log.warning(note)
    return note is None


def run_one(
    run: RunSpec,
    *,
    on_eval: Callback | None = None,
    on_step: Callback | None = None,
    keep_best_state: bool = False,
) -> RunOutcome:
    """Train and evaluate one run. Raises NonFiniteLoss or any error; the caller records it."""
    threads = torch.get_num_threads()
    try:
        return _train_and_evaluate(run, on_eval, on_step, keep_best_state)
    finally:
        torch.set_num_threads(threads)  # train.threads is per run, not for the whole process


def _train_and_evaluate(
    run: RunSpec,
    on_eval: Callback | None,
    on_step: Callback | None,
    keep_best_state: bool,
) -> RunOutcome:
    from addrop_cli.data.batching import make_loader, prepare_task_data
    from addrop_cli.data.metrics import compute_metrics, higher_is_better
    from addrop_cli.data.tasks import get_task
    from addrop_cli.methods.registry import build_method
    from addrop_cli.models.loading import load_model_and_tokenizer

    started = time.perf_counter()
    train = run.train
    if train.threads:
        torch.set_num_threads(train.threads)
    device = pick_device(train.device)
    amp_dtype = pick_precision(train.precision, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # this run's peak, not the process's
    task = get_task(run.task, run.data)

    # Seeds: one for the model (head init), one generator for data order, one inside the method
    # for masks; the same seed gives every method the same head, data subset and batch order.
    torch.manual_seed(run.seed)
    method = build_method(
        run.params, is_regression=task.is_regression, seed=run.seed, device=device
    )
    model_spec = run.model.model_copy(
        update={"name_or_path": resolve_model_location(run.model.name_or_path, run.base_dir)}
    )
    model, tokenizer = load_model_and_tokenizer(
        model_spec,
        num_labels=task.num_labels,
        is_regression=task.is_regression,
        config_overrides=method.config_overrides(),
    )
    model.to(device)
    method.attach(model)
    compiled = train.compile and _compile(model, device)
    data = prepare_task_data(
        task, run.data, tokenizer, train.max_length, run.seed, base_dir=run.base_dir
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = torch.Generator().manual_seed(run.seed)
    train_loader = make_loader(
        data.train,
        train.batch_size,
        shuffle=True,
        generator=order,
        pad_token_id=pad_id,
        group_by_length=train.group_by_length,
        pad_to_multiple_of=train.pad_to_multiple_of,
    )

    def eval_loaders(splits: dict) -> dict:
        return {
            name: make_loader(
                split,
                train.eval_batch_size,
                shuffle=False,
                generator=None,
                pad_token_id=pad_id,
                pad_to_multiple_of=train.pad_to_multiple_of,
            )
            for name, split in splits.items()
        }

    dev_loaders = eval_loaders(data.dev)
    select_is_dev = set(data.select) == set(data.dev)
    select_loaders = dev_loaders if select_is_dev else eval_loaders(data.select)

    optimizer = build_optimizer(model, train)
    steps_per_epoch = math.ceil(len(train_loader) / train.grad_accum)
    schedule = build_schedule(optimizer, train, steps_per_epoch * train.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    def autocast() -> Any:
        if amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    def evaluate() -> tuple[dict, dict, dict]:
        """Metrics on the selection and dev splits, and the dev predictions."""
        dev_preds = {
            name: predict_split(model, loader, device, autocast, task.is_regression)
            for name, loader in dev_loaders.items()
        }
        dev_metrics = compute_metrics(
            task, {n: (p, np.asarray(data.dev[n].labels)) for n, p in dev_preds.items()}
        )
        if select_is_dev:
            select_metrics = dev_metrics
        else:
            select_preds = {
                name: predict_split(model, loader, device, autocast, task.is_regression)
                for name, loader in select_loaders.items()
            }
            select_metrics = compute_metrics(
                task,
                {n: (p, np.asarray(data.select[n].labels)) for n, p in select_preds.items()},
            )
        model.train()
        return select_metrics, dev_metrics, dev_preds

    main = task.main_metric
    better = higher_is_better(main)
    best: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    best_preds: dict[str, np.ndarray] = {}
    best_state: dict[str, torch.Tensor] | None = None
    evals_since_best = 0
    epochs_log: list[dict[str, Any]] = []
    train_time = 0.0
    samples_seen = 0
    global_step = 0
    stop = False
    epoch = -1

    def record_eval(
        epoch: int, loss_sum: float, loss_count: int, epoch_time: float, epoch_samples: int
    ) -> bool:
        """Evaluate, log, track the best; True when early stopping says stop."""
        nonlocal best, last, best_preds, best_state, evals_since_best
        select_metrics, dev_metrics, dev_preds = evaluate()
        record = {
            "epoch": epoch,
            "step": global_step,
            "train_loss": loss_sum / max(1, loss_count),
            "select": select_metrics,
            "dev": dev_metrics,
            "epoch_time_s": round(epoch_time, 3),
            "train_samples_per_s": round(epoch_samples / max(epoch_time, 1e-9), 2),
            "lr": schedule.get_last_lr()[0],
            "method": method.epoch_stats(),
        }
        epochs_log.append(record)
        if on_eval:
            on_eval(record)
        last = {"epoch": epoch, "step": global_step, "dev": dev_metrics, "select": select_metrics}
        score = select_metrics[main]
        improved = best is None or (
            score > best["select"][main] if better else score < best["select"][main]
        )
        if improved:
            best = last
            best_preds = dev_preds
            evals_since_best = 0
            if keep_best_state:
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            evals_since_best += 1
        return train.patience is not None and evals_since_best >= train.patience

    model.train()
    for epoch in range(train.epochs):
        method.on_epoch_start(epoch)
        epoch_start = time.perf_counter()
        loss_sum, loss_count, epoch_samples = 0.0, 0, 0
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(train_loader):
            batch = _to_device(batch, device)
            with autocast():
                out = method.training_step(model, batch)
            loss = out.loss.float()
            if not torch.isfinite(loss):
                raise NonFiniteLoss(
                    f"training loss became {loss.item()} at epoch {epoch}, step {global_step}"
                )
            scaler.scale(loss / train.grad_accum).backward()
            loss_sum += loss.item()
            loss_count += 1
            epoch_samples += batch["input_ids"].shape[0]
            if (i + 1) % train.grad_accum == 0 or i + 1 == len(train_loader):
                if train.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                if on_step:
                    elapsed = time.perf_counter() - epoch_start
                    on_step(
                        StepProgress(
                            epoch,
                            i + 1,
                            len(train_loader),
                            loss.item(),
                            epoch_samples / max(elapsed, 1e-9),
                        )
                    )
                if train.eval_every_steps and global_step % train.eval_every_steps == 0:
                    elapsed = time.perf_counter() - epoch_start
                    stop = record_eval(epoch, loss_sum, loss_count, elapsed, epoch_samples)
                    if stop:
                        break
        epoch_time = time.perf_counter() - epoch_start
        train_time += epoch_time
        samples_seen += epoch_samples
        if stop:
            break
        if record_eval(epoch, loss_sum, loss_count, epoch_time, epoch_samples):
            stop = True
            break

    assert best is not None and last is not None  # at least one epoch always runs
    memory, memory_kind = peak_memory_mb(device)
    metrics = {
        "status": "done",
        "task": run.task,
        "variant": run.variant,
        "seed": run.seed,
        "main_metric": main,
        "best_epoch": best["epoch"],
        "best_step": best["step"],
        "epochs_run": epoch + 1,
        "stopped_early": stop,
        "best": {"dev": best["dev"], "select": best["select"]},
        "last": {"dev": last["dev"], "select": last["select"]},
        "selection": "dev" if select_is_dev else "heldout",
        "train_examples": len(data.train),
        "wall_time_s": round(time.perf_counter() - started, 3),
        "train_time_s": round(train_time, 3),
        "train_samples_per_s": round(samples_seen / max(train_time, 1e-9), 2),
        "peak_memory_mb": round(memory, 1),
        "memory_kind": memory_kind,
        "device": str(device),
        "precision": str(amp_dtype).removeprefix("torch.") if amp_dtype else "fp32",
        "compiled": compiled,
    }
    predictions = {
        name: {
            "guids": list(data.dev[name].guids),
            "predictions": preds.tolist(),
            "labels": list(data.dev[name].labels),
        }
        for name, preds in best_preds.items()
    }
    return RunOutcome(metrics, predictions, best_state, epochs_log)
