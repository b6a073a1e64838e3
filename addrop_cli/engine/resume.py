"""A run's training state on its way to disk: the random generators and the packing of what
the payload holds into tensors and plain values.

:meth:`~addrop_cli.engine.loop.RunLoop.state_dict` assembles the payload, the loop's part coming
from :class:`~addrop_cli.engine.loopstate.LoopState`; this module knows neither.

The payload holds the model, optimiser, schedule and GradScaler; every random generator (Python,
NumPy, torch CPU and CUDA, the data-order generator, the method's mask generator); the position
(epoch, batches consumed in it, and the data-order generator's state when the epoch began, so the
epoch's permutation is drawn again and the consumed batches skipped); the epoch's running sums;
early stopping, the epochs log and the best and last evaluations (with the best weights when they
are kept). Only tensors and plain Python values, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from addrop_cli.engine.evaluation import Best, Evaluation
from addrop_cli.store.records import EpochRecord


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


def pack_best(best: Best | None) -> dict[str, Any] | None:
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


def unpack_best(packed: dict[str, Any] | None) -> Best | None:
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


def epochs_of(payload: dict[str, Any]) -> list[EpochRecord]:
    """The evaluations a state has logged (what epochs.jsonl must hold when it resumes)."""
    return [EpochRecord.model_validate(r) for r in payload["loop"]["epochs"]]
