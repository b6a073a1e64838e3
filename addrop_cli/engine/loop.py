"""One training run, start to finish: :func:`run_one`.

It reads as a recipe: :func:`setup_run` builds everything a run trains with (seeded model, data,
method, optimiser, schedule, evaluator); :class:`RunLoop` trains epoch by epoch
(:meth:`~RunLoop.train_epoch`), evaluates after each epoch and optionally every N steps
(:meth:`~RunLoop.evaluate`), stops early on the task's main metric (:class:`EarlyStopping`) and
hands back a :class:`RunOutcome` of typed store records. It knows nothing about which method it
runs (the method does its own forward passes) nor where progress goes (a :class:`RunLogger`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from addrop_cli.data.batching import TaskData, make_loader, prepare_task_data
from addrop_cli.data.metrics import higher_is_better
from addrop_cli.data.tasks import TaskInfo, get_task
from addrop_cli.engine.devices import (
    Autocast,
    peak_memory_mb,
    pick_device,
    pick_precision,
    to_device,
)
from addrop_cli.engine.evaluation import Best, Evaluator
from addrop_cli.engine.loggers import Loggers, RunLogger, StepEvent
from addrop_cli.engine.loopstate import EpochTally, LoopState, Pending
from addrop_cli.engine.optim import build_optimizer, build_schedule
from addrop_cli.engine.resume import rng_state
from addrop_cli.engine.stopping import EarlyStopping
from addrop_cli.methods.base import Method
from addrop_cli.methods.registry import build_method
from addrop_cli.models.adapters import apply_adapter, parameter_counts
from addrop_cli.models.layerwise import reinit_top_layers
from addrop_cli.models.loading import load_model_and_tokenizer
from addrop_cli.models.location import located
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.store.records import EpochRecord, RunMetrics, SplitMetrics, SplitPredictions
from addrop_cli.store.state import TrainingStateFiles

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the run is recorded as failed."""


@dataclass
class RunOutcome:
    """What a finished run hands back to be stored."""

    metrics: RunMetrics
    predictions: dict[str, SplitPredictions]
    best_state: dict[str, torch.Tensor] | None = None
    epochs: list[EpochRecord] = field(default_factory=list)
    model: Any = None
    """The trained model as training left it (for checkpoint-last/), and its tokenizer."""
    tokenizer: Any = None


def run_one(
    run: RunSpec,
    *,
    loggers: list[RunLogger] | Loggers = (),
    keep_best_state: bool = False,
    state: TrainingStateFiles | None = None,
    resume: dict[str, Any] | None = None,
) -> RunOutcome:
    """Train and evaluate one run. Raises NonFiniteLoss or any error; the caller records it.

    With ``state`` the training state is written there at the end of every epoch (and every
    ``train.checkpoint_every_steps`` steps); ``resume`` is a payload read back from it, to go on
    from where it was taken. The loop reports steps and evaluations to ``loggers``; their
    ``on_end`` is the caller's, who knows how the run ended.
    """
    threads = torch.get_num_threads()
    try:
        started = time.perf_counter()
        fan_out = loggers if isinstance(loggers, Loggers) else Loggers(required=loggers)
        loop = RunLoop(setup_run(run), fan_out, keep_best_state, state)
        if resume is not None:
            loop.load_state_dict(resume)
        return loop.run(started)
    finally:
        torch.set_num_threads(threads)  # train.threads is per run, not for the whole process


# ---------------------------------------------------------------------------------------------
# Setup: everything a run trains with
# ---------------------------------------------------------------------------------------------


@dataclass
class Setup:
    run: RunSpec
    task: TaskInfo
    device: torch.device
    autocast: Autocast
    method: Method
    model: torch.nn.Module
    data: TaskData
    train_loader: Any
    evaluator: Evaluator
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    order: torch.Generator
    """The data-order generator (the training loader draws each epoch's permutation from it)."""
    tokenizer: Any
    compiled: bool = False


def setup_run(run: RunSpec) -> Setup:
    """Seeded model, data, method, optimiser and schedule for ``run``.

    Seeds: one for the model (head init), one generator for data order, one inside the method
    for masks; the same seed gives every method the same head, data subset and batch order.
    """
    train = run.train
    if train.threads:
        torch.set_num_threads(train.threads)
    device = pick_device(train.device)
    autocast = Autocast(device, pick_precision(train.precision, device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # this run's peak, not the process's
    task = get_task(run.task, run.data)

    torch.manual_seed(run.seed)
    method = build_method(
        run.params, is_regression=task.is_regression, seed=run.seed, device=device
    )
    model, tokenizer = load_model_and_tokenizer(
        located(run.model, run.base_dir),
        num_labels=task.num_labels,
        is_regression=task.is_regression,
        config_overrides=method.config_overrides(),
    )
    reinit_top_layers(model, train.reinit_layers)  # before attach: mixout's targets are these
    model = apply_adapter(model, train.adapter)  # LoRA draws its A matrices from the seed too
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
    evaluator = Evaluator(
        task, data, train.eval_batch_size, pad_id, device, autocast, train.pad_to_multiple_of
    )

    optimizer = build_optimizer(model, train)
    steps_per_epoch = math.ceil(len(train_loader) / train.grad_accum)
    schedule = build_schedule(optimizer, train, steps_per_epoch * train.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast.dtype == torch.float16)
    return Setup(
        run, task, device, autocast, method, model, data, train_loader, evaluator, optimizer,
        schedule, scaler, order, tokenizer, compiled,
    )  # fmt: skip


def _compile(model: torch.nn.Module, device: torch.device) -> bool:
    """train.compile: compile the model in place; a family that cannot be says so in one line."""
    from addrop_cli.models.compiling import compile_model

    note = compile_model(model, device)  # type: ignore[arg-type]
    if note:
        log.warning(note)
    return note is None


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


class RunLoop:
    """Epochs of optimiser steps with evaluations, early stopping and the best result kept."""

    def __init__(
        self,
        setup: Setup,
        loggers: Loggers,
        keep_best_state: bool,
        state_files: TrainingStateFiles | None = None,
    ) -> None:
        self.s = setup
        self.state_files = state_files
        self.pending: Pending | None = None
        """A restored state's position, until its epoch begins (:meth:`load_state_dict`)."""
        self.train = setup.run.train
        self.loggers = loggers
        self.keep_best_state = keep_best_state
        main = setup.task.main_metric
        stopping = EarlyStopping(main, higher_is_better(main), self.train.patience)
        self.state = LoopState(stopping, threads=torch.get_num_threads())

    def state_dict(self) -> dict[str, Any]:
        """The training state at the loop's position: model, optimiser, schedule, scaler, the
        method's and every random generator's state, and the loop's own (:class:`LoopState`)."""
        s = self.s
        return {
            **self.state.state_dict(),
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "schedule": s.schedule.state_dict(),
            "scaler": s.scaler.state_dict(),
            "method": s.method.state_dict(),
            "rng": rng_state(s.order),
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        """Go on where :meth:`state_dict` took ``payload`` (emptied afterwards); the method's and
        the random generators' states when its epoch begins, since building the run drew from
        them."""
        s = self.s
        s.model.load_state_dict(payload["model"])
        s.optimizer.load_state_dict(payload["optimizer"])
        s.schedule.load_state_dict(payload["schedule"])
        s.scaler.load_state_dict(payload["scaler"])
        self.state.load_state_dict(payload)
        self.pending = Pending(payload["position"], payload["tally"], payload["method"],
                               payload["rng"])  # fmt: skip
        payload.clear()  # the loaded weights were copied into the model: do not hold them twice

    def run(self, started: float) -> RunOutcome:
        self.s.model.train()
        if self.pending is None:  # a resumed run's method state already holds what this made
            self._prepare_method()
        first = self.pending.epoch if self.pending else 0
        for epoch in range(first, self.train.epochs):
            self.train_epoch(epoch)
            if self.state.stopped:
                break
            if epoch + 1 < self.train.epochs:  # no state after the last: the run is ending
                self.state.at_epoch_start(epoch + 1, self.s.order.get_state(), None)
                self.save_state()
        return self.result(time.perf_counter() - started)

    def _prepare_method(self) -> None:
        """The method's pass over the training batches; the data-order generator is put back,
        so the first epoch sees the batches it would have without the pass."""
        s = self.s
        before = s.order.get_state()
        s.method.prepare(s.model, (to_device(b, s.device) for b in s.train_loader))
        s.order.set_state(before)
        s.optimizer.zero_grad(set_to_none=True)

    def train_epoch(self, epoch: int) -> None:
        """One pass over the training data; evaluates at its end (and every N steps)."""
        s, st, pending = self.s, self.state, self.pending
        self.pending = None
        tally = EpochTally()
        skip = pending.begin_epoch(s.method, s.order, tally) if pending else 0
        if pending is None:
            s.method.on_epoch_start(epoch)
        st.at_epoch_start(epoch, s.order.get_state(), tally)
        s.optimizer.zero_grad(set_to_none=True)
        n = len(s.train_loader)
        every, every_save = self.train.eval_every_steps, self.train.checkpoint_every_steps
        batches = iter(s.train_loader)
        for _ in range(skip):  # consumed before the state was taken: same permutation, same batches
            next(batches)
        if pending:
            pending.after_skip(s.order)
        for i, batch in enumerate(batches, start=skip):
            loss = self._forward_backward(to_device(batch, s.device), epoch)
            tally.loss_sum += loss
            tally.loss_count += 1
            tally.samples += batch["input_ids"].shape[0]
            if (i + 1) % self.train.grad_accum == 0 or i + 1 == n:
                self._optimizer_step()
                tally.steps = None if tally.steps is None else tally.steps + 1
                self.loggers.on_step(self._step_event(epoch, i + 1, n, loss, tally))
                inside = i + 1 < n  # the epoch's last step is evaluated (once) at its end below
                if every and st.global_step % every == 0 and inside and self.evaluate(epoch, tally):
                    break
                if every_save and st.global_step % every_save == 0 and inside:
                    st.batches_done = i + 1
                    with tally.paused():  # a state write is not training time
                        self.save_state()
        st.epochs_run = epoch + 1
        st.train_time += tally.elapsed
        st.samples_seen += tally.samples
        if not st.stopped:
            self.evaluate(epoch, tally)

    def save_state(self) -> None:
        """Write the training state (when the run has a place for it); only the latest is kept."""
        if self.state_files is not None:
            payload = self.state_dict()
            self.state_files.write(payload, step=self.state.global_step, epoch=self.state.epoch)

    def _forward_backward(self, batch: dict[str, torch.Tensor], epoch: int) -> float:
        s = self.s
        with s.autocast():
            out = s.method.training_step(s.model, batch)
        loss = out.loss.float()
        if not torch.isfinite(loss):
            step = self.state.global_step
            raise NonFiniteLoss(f"training loss became {loss.item()} at epoch {epoch}, step {step}")
        s.scaler.scale(loss / self.train.grad_accum).backward()
        return loss.item()

    def _optimizer_step(self) -> None:
        s = self.s
        if self.train.grad_clip:
            s.scaler.unscale_(s.optimizer)
            torch.nn.utils.clip_grad_norm_(s.model.parameters(), self.train.grad_clip)
        s.method.before_optimizer_step(s.model)
        s.scaler.step(s.optimizer)
        s.scaler.update()
        s.schedule.step()
        s.optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1

    def _step_event(self, epoch: int, i: int, n: int, loss: float, tally: EpochTally) -> StepEvent:
        return StepEvent(
            epoch=epoch,
            step_in_epoch=i,
            steps_per_epoch=n,
            global_step=self.state.global_step,
            loss=loss,
            samples_per_s=tally.samples / max(tally.elapsed, 1e-9),
            lr=self.s.schedule.get_last_lr()[0],
            method=self.s.method.step_stats() if self.loggers.wants_method_stats else {},
        )

    def evaluate(self, epoch: int, tally: EpochTally) -> bool:
        """Evaluate, log, keep the best; True (and ``stopped``) when early stopping says stop."""
        with tally.paused():  # training time only: the evaluation is not counted
            return self._evaluate(epoch, tally)

    def _evaluate(self, epoch: int, tally: EpochTally) -> bool:
        s, st = self.s, self.state
        elapsed, cpu, load = tally.elapsed, tally.cpu_seconds, _load_1m()
        ev = s.evaluator(s.model)
        record = EpochRecord(
            epoch=epoch + 1,  # stored and shown counted from 1; the loop counts from 0
            step=st.global_step,
            train_loss=tally.mean_loss,
            select=ev.select,
            dev=ev.dev,
            dev_loss=ev.dev_loss,
            select_loss=ev.select_loss,
            epoch_time_s=round(elapsed, 3),
            train_samples_per_s=round(tally.samples / max(elapsed, 1e-9), 2),
            lr=s.schedule.get_last_lr()[0],
            method=s.method.epoch_stats(),
            steps=tally.steps,
            cpu_time_s=_rounded(cpu),
            load_1m=load,
            cpus=os.cpu_count(),
        )
        st.epochs_log.append(record)
        self.loggers.on_eval(record)
        st.last = Best(ev, record.epoch, st.global_step)
        if st.stopping.update(ev.select[st.stopping.metric]):
            weights = None
            if self.keep_best_state:
                weights = {k: v.detach().cpu().clone() for k, v in s.model.state_dict().items()}
            st.best = Best(ev, record.epoch, st.global_step, weights)
        st.stopped = st.stopping.should_stop
        return st.stopped

    def result(self, wall_time: float) -> RunOutcome:
        s, st = self.s, self.state
        assert st.best is not None and st.last is not None  # one epoch always runs
        best, last = st.best, st.last
        memory, memory_kind = peak_memory_mb(s.device)
        trainable, total = parameter_counts(s.model)
        metrics = RunMetrics(
            task=s.run.task,
            variant=s.run.variant,
            seed=s.run.seed,
            main_metric=st.stopping.metric,
            best_epoch=best.epoch,
            best_step=best.step,
            epochs_run=st.epochs_run,
            stopped_early=st.stopped,
            best=SplitMetrics(dev=best.evaluation.dev, select=best.evaluation.select),
            last=SplitMetrics(dev=last.evaluation.dev, select=last.evaluation.select),
            selection="dev" if s.evaluator.select_is_dev else "heldout",
            train_examples=len(s.data.train),
            wall_time_s=round(wall_time, 3),
            train_time_s=round(st.train_time, 3),
            prepare_time_s=_rounded(s.method.prepare_seconds),
            train_samples_per_s=round(st.samples_seen / max(st.train_time, 1e-9), 2),
            peak_memory_mb=round(memory, 1),
            memory_kind=memory_kind,
            device=str(s.device),
            precision=str(s.autocast.dtype).removeprefix("torch.") if s.autocast.dtype else "fp32",
            compiled=s.compiled,
            trainable_parameters=trainable,
            total_parameters=total,
        )
        predictions = {
            name: SplitPredictions(
                guids=list(s.data.dev[name].guids),
                predictions=np.asarray(preds).tolist(),
                labels=list(s.data.dev[name].labels),
            )
            for name, preds in best.evaluation.dev_predictions.items()
        }
        return RunOutcome(metrics, predictions, best.state, st.epochs_log, s.model, s.tokenizer)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _load_1m() -> float | None:
    """The machine's 1-minute load average; None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
