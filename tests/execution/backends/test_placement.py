"""Several runs per GPU: the pool's plan (GPUs mocked), the memory estimate, and a real pool.

No GPU is needed: the device list and free memory are passed in or patched, and the real pool
runs its workers on CPU with ``CUDA_VISIBLE_DEVICES`` set as it would be on a GPU machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli

from addrop_cli.engine.failures import describe_failure
from addrop_cli.execution.backends import local
from addrop_cli.execution.backends.local import PoolBackend, SerialBackend
from addrop_cli.execution.backends.placement import (
    AUTO_MAX_RUNS_PER_GPU,
    auto_runs_per_gpu,
    plan_pool,
    runs_sharing,
    spec_run_bytes,
)
from addrop_cli.execution.planning import runner
from addrop_cli.models.footprint import PROCESS_OVERHEAD, activation_bytes, parameter_count
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.schema import ExecutorSpec
from addrop_cli.store.reader import load_runs

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"
GIB = 1 << 30


def never(*_: object) -> int:
    raise AssertionError("the memory estimate is only needed for runs_per_gpu: auto")


# ------------------------------------------------------------------ the plan


def test_cpu_machines_keep_workers_and_say_runs_per_gpu_does_not_apply() -> None:
    plan = plan_pool(ExecutorSpec(workers=3), [], never, cpus=6)
    assert plan.placement == [(None, 2)] * 3 and plan.note is None
    plan = plan_pool(ExecutorSpec(workers=2, runs_per_gpu=4), [], never, cpus=6)
    assert plan.workers == 2 and "--workers N" in (plan.note or "")
    assert plan_pool(ExecutorSpec(workers=0), [], never, cpus=6).workers == 1


@pytest.mark.parametrize("gpus,k", [(["0"], 3), (["0", "1"], 2), (["2", "5", "7"], 4)])
def test_k_runs_per_gpu_puts_k_workers_on_every_gpu_and_shares_the_cores(gpus, k) -> None:
    plan = plan_pool(ExecutorSpec(workers=1, runs_per_gpu=k), gpus, never, cpus=16)
    assert plan.workers == k * len(gpus)
    assert {gpu: sum(g == gpu for g, _ in plan.placement) for gpu in gpus} == dict.fromkeys(gpus, k)
    assert {t for _, t in plan.placement} == {max(1, 16 // (k * len(gpus)))}
    assert runs_sharing(plan.placement) == [k] * plan.workers
    threads = plan_pool(ExecutorSpec(runs_per_gpu=k, threads=3), gpus, never, cpus=16)
    assert {t for _, t in threads.placement} == {3}


def test_one_run_per_gpu_is_the_old_pool() -> None:
    assert plan_pool(ExecutorSpec(workers=0), ["0", "1"], never, cpus=4).placement == [
        ("0", 2),
        ("1", 2),
    ]
    assert plan_pool(ExecutorSpec(workers=1), ["0", "1"], never, cpus=4).workers == 1


def test_auto_fits_the_fullest_gpu_and_is_capped() -> None:
    plan = plan_pool(
        ExecutorSpec(runs_per_gpu="auto"),
        ["0", "1"],
        lambda: 2 * GIB,
        cpus=16,
        free=lambda gpus: [40 * GIB, 9 * GIB],
    )
    assert plan.workers == 2 * 4  # 0.9 x 9 GiB holds four 2 GiB runs
    assert "auto -> 4" in (plan.note or "") and "2.0 GiB" in (plan.note or "")
    assert auto_runs_per_gpu(GIB, [140 * GIB], cpus=64) == AUTO_MAX_RUNS_PER_GPU
    assert auto_runs_per_gpu(GIB, [140 * GIB, 140 * GIB], cpus=6) == 3  # a core per worker
    assert auto_runs_per_gpu(10 * GIB, [GIB], cpus=8) == 1  # never none


def test_run_memory_estimate_grows_with_what_it_should() -> None:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(ROOT / "experiments" / "assets" / "tiny-bert")
    model = AutoModelForSequenceClassification.from_config(config)
    assert parameter_count(config) == sum(p.numel() for p in model.parameters())

    def acts(b=16, s=64, mixed=False, passes=1):  # type: ignore[no-untyped-def]
        return activation_bytes(config, b, s, mixed_precision=mixed, passes=passes)

    assert acts(b=32) == 2 * acts() and acts(passes=2) == 2 * acts()
    assert acts(mixed=True) * 2 == acts() and acts(s=128) > 2 * acts()
    plain = load_spec(SMOKE, ["methods={baseline: {}}"])
    both = load_spec(SMOKE)
    assert spec_run_bytes(both, SMOKE.parent) > spec_run_bytes(plain, SMOKE.parent)
    assert spec_run_bytes(plain, SMOKE.parent) > PROCESS_OVERHEAD


def test_the_memory_estimate_counts_the_forward_passes_each_method_keeps_alive() -> None:
    """R-Drop keeps both dropout passes' graphs until its one backward, so its run needs a second
    pass's activations, as AD-DROP's does (the estimate once counted AD-DROP's alone)."""
    from transformers import AutoConfig

    def run_bytes(methods: str) -> int:
        return spec_run_bytes(load_spec(SMOKE, [f"methods={methods}"]), SMOKE.parent)

    train = load_spec(SMOKE).train
    config = AutoConfig.from_pretrained(ROOT / "experiments" / "assets" / "tiny-bert")
    mixed = train.precision != "fp32"
    one_pass = activation_bytes(
        config, train.batch_size, train.max_length, mixed_precision=mixed, passes=1
    )
    baseline = run_bytes("{baseline: {}}")
    assert run_bytes("{rdrop: {}}") == baseline + one_pass
    assert run_bytes("{addrop: {}}") == baseline + one_pass
    assert run_bytes("{childtuning: {}, mixout: {}, dropout: {}}") == baseline
    assert run_bytes("{baseline: {}, rdrop: {alpha: 1.0}}") == baseline + one_pass  # the largest


def test_make_backend_packs_runs_on_the_visible_gpus(monkeypatch) -> None:
    monkeypatch.setattr(local, "visible_gpus", lambda: ["0", "1"])
    spec = load_spec(SMOKE, ["train.device=auto", "executor.runs_per_gpu=3"])
    backend = runner.make_backend(spec, SMOKE.parent)
    assert isinstance(backend, PoolBackend)
    assert sorted(gpu for gpu, _ in backend.placement) == ["0"] * 3 + ["1"] * 3
    cpu_spec = load_spec(SMOKE, ["executor.runs_per_gpu=3"])  # device: cpu, so no GPU is used
    assert isinstance(runner.make_backend(cpu_spec, SMOKE.parent), SerialBackend)


def test_out_of_memory_advice_names_fewer_runs_per_gpu_only_when_shared() -> None:
    err = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    alone = describe_failure(err)
    shared = describe_failure(err, sharing=3)
    assert "runs-per-gpu" not in alone and "train.batch_size" in alone
    assert "--runs-per-gpu 2" in shared and "train.batch_size" in shared
    assert describe_failure(ValueError("x"), sharing=3) == "ValueError: x"


# ------------------------------------------------------------------ a real pool


def test_a_pool_sharing_one_gpu_fails_only_the_run_out_of_memory(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    faults: Callable[..., None],
) -> None:
    """Two workers on (mocked) GPU 0; every AD-DROP step of seed 1 runs out of memory in its
    worker process. That run fails with advice; its neighbours finish."""
    faults(oom_at="addrop:1:*")
    monkeypatch.setattr(local, "visible_gpus", lambda: ["0"])
    args = ["tasks=[sst2]", "seeds=[1,2]", "train.epochs=2", "train.device=auto"]
    result = run_cli(
        capsys, "run", SMOKE, *args, "--runs-per-gpu", "2", "--plain", "--results", tmp_path
    )
    assert result.code == 1, result.err + result.out
    assert "local pool: 2 worker processes (2 on GPU 0;" in result.out
    by_run = {(r.variant, r.seed): r for r in load_runs(tmp_path / "smoke")}
    failed = by_run.pop(("addrop", 1))
    assert failed.status == "failed" and "out of memory" in failed.reason
    assert "--runs-per-gpu 1" in failed.reason
    assert {key: r.status for key, r in by_run.items()} == {
        ("baseline", 1): "done",
        ("baseline", 2): "done",
        ("addrop", 2): "done",
    }
    pids = set()
    for r in load_runs(tmp_path / "smoke"):
        log = (tmp_path / "smoke" / "attempts" / f"{r.path.name}.log").read_text()
        pids.add(log.split("pid=")[1].split()[0])
    assert len(pids) == 2 and str(os.getpid()) not in pids
    env = json.loads((by_run["addrop", 2].path / "env.json").read_text())
    assert env["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)


def test_runs_per_gpu_in_the_spec_and_on_the_command_line() -> None:
    assert load_spec(SMOKE).executor.runs_per_gpu == 1
    assert load_spec(SMOKE, ["executor.runs_per_gpu=auto"]).executor.runs_per_gpu == "auto"
    assert load_spec(SMOKE, ["executor.runs_per_gpu=4"]).executor.runs_per_gpu == 4
    from addrop_cli.cli.options import executor_overrides
    from addrop_cli.errors import SpecError

    overrides = executor_overrides({"runs_per_gpu": "auto", "workers": None})
    assert load_spec(SMOKE, overrides).executor.runs_per_gpu == "auto"
    for bad in ("-1", "0", "65", "many"):
        with pytest.raises(SpecError, match="runs_per_gpu"):
            load_spec(SMOKE, [f"executor.runs_per_gpu={bad}"])


def test_runs_per_gpu_auto_stays_auto_when_validated_again() -> None:
    """auto is stored as the word, so a spec dumped and read back (a sweep point) keeps it and
    a literal 0 can be refused."""
    executor = ExecutorSpec(runs_per_gpu="auto")
    assert ExecutorSpec.model_validate(executor.model_dump(mode="json")).runs_per_gpu == "auto"
    with pytest.raises(ValueError, match="write auto"):
        ExecutorSpec(runs_per_gpu=0)
