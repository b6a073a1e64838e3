"""Run identity, in one place: what determines a run's result, its id, and its variant.

A run id is the hash of the run's identity (task, method parameters, seed, model, training and
data settings, sweep and factor points). Settings that change where or how fast a run goes, not
its result, are left out, so that moving the GLUE folder or the cache, running on more threads or
compiling never redoes a run; nor do checkpointing and the training state. The spec layer builds
identities from its settings (``spec/matrix.py``); the store and the report compare them here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

TRAIN_KEYS_NOT_IN_ID = frozenset({
    "device", "threads", "save_checkpoint", "eval_batch_size", "compile",
    "save_last", "checkpoint_every_steps", "keep_state",
})  # fmt: skip
DATA_KEYS_NOT_IN_ID = frozenset({"source", "glue_dir", "cache_dir"})

RUN_AXES = ("task", "seed", "sweep", "factors")
"""The parts of an identity that place a run in its experiment's matrix; the rest is its
variant."""


def config_hash(obj: Any, length: int = 12) -> str:
    """A short, stable hash of a JSON-serialisable object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def point_label(point: dict[str, Any] | None) -> str:
    """``train_size=500, lr=2e-05``: a sweep or factor point by the last part of each path."""
    return ", ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in (point or {}).items())


def run_identity(
    *,
    task: str,
    seed: int,
    params: dict[str, Any],
    model: dict[str, Any],
    train: dict[str, Any],
    data: dict[str, Any],
    sweep: dict[str, Any] | None,
    factors: dict[str, Any] | None,
) -> dict[str, Any]:
    """The identity of a run from its settings (each dumped without its defaults, so a setting
    added later at its default never changes the id of a run stored before it)."""
    # only a run with a factor point names it: runs of specs without factors keep their ids
    named = {"factors": factors} if factors else {}
    return named | {
        "task": task,
        "params": params,
        "seed": seed,
        "model": model,
        "train": {k: v for k, v in train.items() if k not in TRAIN_KEYS_NOT_IN_ID},
        "data": {k: v for k, v in data.items() if k not in DATA_KEYS_NOT_IN_ID},
        "sweep": sweep,
    }


def run_id(identity: dict[str, Any]) -> str:
    return config_hash(identity)


def variant_identity(
    identity: dict[str, Any],
    sweep_point: dict[str, Any] | None = None,
    factors: dict[str, Any] | None = None,
) -> str:
    """What makes two runs the same variant (their task, seed, sweep and factor points aside):
    the report puts runs with equal names and equal variant identities in one column, so a value
    added to a factor or a sweep's next point is not another version of the variant."""
    same = {k: v for k, v in identity.items() if k not in RUN_AXES}
    for point in (sweep_point, factors):
        if point:
            same = _without_point(same, point)
    return config_hash(same)


def _without_point(identity: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """``identity`` without the settings a point sets (``methods.<variant>.p`` is the
    identity's ``params.p``; ``train.lr`` its ``train.lr``)."""
    out = json.loads(json.dumps(identity))
    for path in point:
        root, *rest = path.split(".")
        keys = ["params", *rest[1:]] if root == "methods" else [root, *rest]
        node = out
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(keys[-1], None)
    return out


def recovered_identity(
    candidates: list[dict[str, Any]], task: str, seed: int, stored_id: str
) -> dict[str, Any] | None:
    """The identity an old run (stored before run.json recorded one) was run with, where it can
    be proven: the candidate (another run's identity without task and seed) that, with this
    run's task and seed put in, hashes to its id. None when no candidate does."""
    for rest in candidates:
        candidate = {**rest, "task": task, "seed": seed}
        if run_id(candidate) == stored_id:
            return candidate
    return None
