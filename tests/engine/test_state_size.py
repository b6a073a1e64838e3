"""``--dry-run``'s training-state size against the state the loop really writes: the weights in
full and AdamW's moments of the trainable parameters only, so a LoRA run's state is about a
third of a full run's (issue 39)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console

from addrop_cli.engine import loop
from addrop_cli.engine.devices import to_device
from addrop_cli.engine.loggers import Loggers
from addrop_cli.execution.planning.runner import expected_state_bytes, print_state_size
from addrop_cli.models.adapters import planned_counts
from addrop_cli.models.loading import load_config
from addrop_cli.models.location import located
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import RunSpec, expand

SMOKE_LORA = Path(__file__).resolve().parents[2] / "experiments" / "smoke-lora.yaml"
FULL = "train.adapter=null"


def tiny_bert(*overrides: str) -> RunSpec:
    """The smoke spec's tiny BERT, one seed, baseline: with its LoRA adapter unless overridden."""
    base = [
        "tasks=[sst2]",
        "seeds=[1]",
        "train.threads=1",
        "factors={}",
        "methods={b: {method: baseline}}",
    ]
    (run,) = expand(load_spec(SMOKE_LORA, [*base, *overrides]), SMOKE_LORA.parent)
    return run


def tensor_bytes(payload: object, seen: set[int] | None = None) -> int:
    """Bytes of every tensor in a nested payload (each storage once)."""
    seen = set() if seen is None else seen
    if isinstance(payload, torch.Tensor):
        storage = payload.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(payload, dict):
        return sum(tensor_bytes(v, seen) for v in payload.values())
    if isinstance(payload, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in payload)
    return 0


def written_state_bytes(run: RunSpec) -> int:
    """The weights and optimiser tensors of the state the loop writes after one optimiser step
    (moments allocated); the rest (random generators' states, ~5 kB each) is not estimated."""
    setup = loop.setup_run(run)
    run_loop = loop.RunLoop(setup, Loggers(), keep_best_state=False)
    run_loop._forward_backward(to_device(next(iter(setup.train_loader)), setup.device), 0)
    run_loop._optimizer_step()
    state = run_loop.state_dict()
    return tensor_bytes([state["model"], state["optimizer"]])


@pytest.mark.parametrize("overrides", [(FULL,), ()], ids=["full", "lora"])
def test_the_estimate_is_what_the_state_holds(overrides: tuple[str, ...]) -> None:
    run = tiny_bert(*overrides)
    written = written_state_bytes(run)
    assert abs(expected_state_bytes(run) - written) / written < 0.01, (
        expected_state_bytes(run),
        written,
    )


def test_a_lora_state_is_smaller_by_the_moments_of_the_frozen_weights() -> None:
    full, lora = tiny_bert(FULL), tiny_bert()
    config = load_config(located(lora.model, lora.base_dir), num_labels=2)
    trainable, total = planned_counts(config, lora.train.adapter)
    assert trainable / total < 0.1
    # full fine-tuning: weights and two moments of every weight; LoRA: the weights, and the
    # moments shrink by the trainable share
    moments_full = expected_state_bytes(full) - expected_state_bytes(full) // 3
    moments_lora = expected_state_bytes(lora) - 4 * total
    assert moments_lora / moments_full == pytest.approx(trainable / total, rel=0.05)
    assert expected_state_bytes(lora) < 0.45 * expected_state_bytes(full)


def test_the_dry_run_shows_a_lora_variant_apart_from_the_full_one() -> None:
    runs = [tiny_bert(FULL), tiny_bert()]
    out = io.StringIO()
    print_state_size(runs, Console(file=out, width=300))
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 2 and "LoRA r=4" in lines[1] and "LoRA" not in lines[0], lines
