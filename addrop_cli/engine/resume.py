"""A run's training state: everything :class:`~addrop_cli.engine.loop.RunLoop` needs to go on
exactly where an interrupted attempt stopped.

The payload holds the model, optimiser, schedule and GradScaler; every random generator (Python,
NumPy, torch CPU and CUDA, the data-order generator, the method's mask generator); the position
(epoch, batches consumed in it, and the data-order generator's state when the epoch began, so the
epoch's permutation is drawn again and the consumed batches skipped); the epoch's running sums;
early stopping, the epochs log and the best and last evaluations (with the best weights when they
are kept). Only tensors and plain Python values, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from addrop_cli.engine.evaluation import Best, Evaluation
from addrop_cli.store.records import EpochRecord

if TYPE_CHECKING:
    from addrop_cli.engine.loop import EpochTally, RunLoop, Setup
    from addrop_cli.spec.matrix import RunSpec


def rng_state(order: torch.Generator) -> dict[str, Any]:
    """Every random generator a run draws from, except the method's (it saves its own)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [
            name,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            pos,
            has_gauss,
            float(cached),
        ],  # fmt: skip
        "torch": torch.get_rng_state(),
        "order": order.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], order: torch.Generator) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    order.set_state(state["order"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _floats(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}  # numpy scalars would not load weights-only


def _pack_best(best: Best | None) -> dict[str, Any] | None:
    if best is None:
        return None
    ev = best.evaluation
    return {
        "epoch": best.epoch,
        "step": best.step,
        "select": _floats(ev.select),
        "dev": _floats(ev.dev),
        "select_loss": _floats(ev.select_loss),
        "dev_loss": _floats(ev.dev_loss),
        "dev_predictions": {k: torch.from_numpy(np.asarray(v))
                            for k, v in ev.dev_predictions.items()},
        "weights": best.state,
    }  # fmt: skip


def _unpack_best(packed: dict[str, Any] | None) -> Best | None:
    if packed is None:
        return None
    ev = Evaluation(
        select=packed["select"],
        dev=packed["dev"],
        select_loss=packed["select_loss"],
        dev_loss=packed["dev_loss"],
        dev_predictions={k: v.numpy() for k, v in packed["dev_predictions"].items()},
    )
    return Best(ev, packed["epoch"], packed["step"], packed["weights"])


def capture(
    loop: RunLoop, *, epoch: int, batches_done: int, order_at_epoch_start: torch.Tensor,
    tally: EpochTally | None,
) -> dict[str, Any]:  # fmt: skip
    """The payload of a state taken after ``batches_done`` batches of ``epoch`` (0: the epoch
    has not begun; ``order_at_epoch_start`` is then the data-order generator's state now)."""
    s = loop.s
    return {
        "position": {"epoch": epoch, "batches_done": batches_done, "order": order_at_epoch_start},
        "tally": None
        if tally is None
        else {
            "loss_sum": tally.loss_sum,
            "loss_count": tally.loss_count,
            "samples": tally.samples,
            "elapsed": tally.elapsed,
        },  # fmt: skip
        "model": s.model.state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "schedule": s.schedule.state_dict(),
        "scaler": s.scaler.state_dict(),
        "method": s.method.state_dict(),
        "rng": rng_state(s.order),
        "loop": {
            "global_step": loop.global_step,
            "epochs_run": loop.epochs_run,
            "train_time": loop.train_time,
            "samples_seen": loop.samples_seen,
            "stopping": loop.stopping.state_dict(),
            "epochs": [record.model_dump(mode="json") for record in loop.epochs_log],
            "best": _pack_best(loop.best),
            "last": _pack_best(loop.last),
        },
    }


def restore(loop: RunLoop, payload: dict[str, Any]) -> None:
    """Put ``loop`` back where :func:`capture` took ``payload`` (emptied afterwards); the random
    generators when its epoch begins (:class:`Pending`), since building the run drew from them."""
    s = loop.s
    s.model.load_state_dict(payload["model"])
    s.optimizer.load_state_dict(payload["optimizer"])
    s.schedule.load_state_dict(payload["schedule"])
    s.scaler.load_state_dict(payload["scaler"])
    state = payload["loop"]
    loop.global_step = state["global_step"]
    loop.epochs_run = state["epochs_run"]
    loop.train_time = state["train_time"]
    loop.samples_seen = state["samples_seen"]
    loop.stopping.load_state_dict(state["stopping"])
    loop.epochs_log = [EpochRecord.model_validate(r) for r in state["epochs"]]
    loop.best = _unpack_best(state["best"])
    loop.last = _unpack_best(state["last"])
    loop.pending = Pending(payload["position"], payload["tally"], payload["method"], payload["rng"])
    payload.clear()  # the loaded weights were copied into the model: do not hold them twice


@dataclass
class Pending:
    """The position of a restored state, applied when the loop begins its epoch.

    The random generators are restored last: for a state taken between epochs before the epoch's
    data order is drawn, for one taken inside an epoch after the permutation was drawn again from
    the data-order generator's state at the epoch's start and the consumed batches skipped
    (whatever creating the loader's iterator draws is then undone too).
    """

    position: dict[str, Any]
    tally: dict[str, Any] | None
    method: dict[str, Any]
    rng: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.position["epoch"])

    @property
    def batches_done(self) -> int:
        return int(self.position["batches_done"])

    def begin_epoch(self, s: Setup, tally: EpochTally) -> int:
        """Start the epoch as the state left it (``tally`` gets its running sums); returns the
        number of batches to skip."""
        if self.batches_done == 0:  # taken between epochs: the method starts its epoch afresh
            s.method.load_state_dict(self.method)
            s.method.on_epoch_start(self.epoch)
            restore_rng(self.rng, s.order)
            return 0
        s.method.on_epoch_start(self.epoch)
        s.method.load_state_dict(self.method)
        s.order.set_state(self.position["order"])
        sums = self.tally or {}
        tally.started = time.perf_counter() - sums["elapsed"]
        tally.loss_sum, tally.loss_count = sums["loss_sum"], sums["loss_count"]
        tally.samples = sums["samples"]
        return self.batches_done

    def after_skip(self, s: Setup) -> None:
        if self.batches_done:
            restore_rng(self.rng, s.order)


def epochs_of(payload: dict[str, Any]) -> list[EpochRecord]:
    """The evaluations a state has logged (what epochs.jsonl must hold when it resumes)."""
    return [EpochRecord.model_validate(r) for r in payload["loop"]["epochs"]]


def expected_state_bytes(run: RunSpec) -> int:
    """About how large the run's training state is: the weights and AdamW's two moments (3x
    the model), plus the best weights when train.save_checkpoint keeps them (4x)."""
    from addrop_cli.data.tasks import get_task
    from addrop_cli.models.footprint import parameter_count
    from addrop_cli.models.loading import load_config
    from addrop_cli.models.location import located

    task = get_task(run.task, run.data)
    config = load_config(located(run.model, run.base_dir), num_labels=task.num_labels)
    fp32_bytes = 4 * parameter_count(config)
    return fp32_bytes * (4 if run.train.save_checkpoint else 3)
