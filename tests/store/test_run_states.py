"""The store's run states and the decisions made from them (addrop_cli/store/status.py): which
states are final, what an invocation counts as a run's outcome, which runs it attempts, and the
words a run's loggers are told at its end. Each is decided in that module only."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import get_args

import pytest
from rich.console import Console

from addrop_cli.engine.loggers import QuietLogger
from addrop_cli.engine.pruning import RunPruned
from addrop_cli.execution.attempt.context import RunContext, Summary, attempt
from addrop_cli.execution.attempt.display import PlainProgress
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import RunSpec, expand
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.records import EpochRecord, FailedMetrics
from addrop_cli.store.status import (
    MARKERS,
    EndStatus,
    FinalStatus,
    RunStatus,
    is_final,
    needs_attempt,
    settled,
)

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"


def test_a_run_is_final_exactly_when_a_marker_ends_it() -> None:
    marked = {status for _, status in MARKERS}
    assert {s for s in get_args(RunStatus) if is_final(s)} == marked == set(get_args(FinalStatus))
    assert not any(is_final(s) for s in ("running", "queued", "skipped", "busy", "lost"))


@pytest.mark.parametrize("status", get_args(RunStatus))
def test_a_run_is_attempted_exactly_when_this_invocation_has_no_outcome_for_it(
    status: RunStatus,
) -> None:
    for lately in (False, True):
        outcome = settled(status, failed_lately=lately)
        attempted = needs_attempt(status, failed_lately=lately)
        if status != "corrupt":  # a reader's word: the runner reads markers (DONE: done)
            assert attempted == (outcome is None)
        assert outcome in (None, status)  # an outcome is the state the store holds
        # without retries a failed run is left alone, whenever it failed
        no_retry = needs_attempt(status, retry_failed=False, failed_lately=lately)
        assert no_retry == (attempted and status != "failed")
    assert settled(status) in (None, "done", "pruned")  # an earlier failure is retried
    if status in ("done", "pruned"):
        assert not needs_attempt(status) and settled(status) == status
    if status == "failed":
        assert needs_attempt(status) and not needs_attempt(status, failed_lately=True)


class _Judge(QuietLogger):
    """A trial judge that prunes the baseline at its first evaluation and hears every end."""

    ends: list[tuple[str, EndStatus]] = []

    def __init__(self, run: RunSpec) -> None:
        self.run = run

    def on_eval(self, record: EpochRecord) -> None:
        if self.run.variant == "baseline":
            raise RunPruned(record.epoch, "worse than the median")

    def on_end(self, status: EndStatus, detail: str) -> None:
        self.ends.append((self.run.variant, status))


def _judges(run: RunSpec) -> list[QuietLogger]:
    return [_Judge(run)]


def test_what_follows_a_run_hears_its_end_in_the_stores_words(tmp_path: Path, faults) -> None:
    """on_end says ``done``, ``failed``, ``pruned`` as the store does; the lines still show a
    failed or pruned run in upper case."""
    spec = load_spec(SMOKE, ["tasks=[sst2]", "seeds=[1]", "train.epochs=1", "train.threads=1"])
    runs = expand(spec, SMOKE.parent)
    faults(fail_at="addrop:1:2")
    store = ExperimentStore.located(spec.name, spec.results_dir, tmp_path)
    store.open_for_writing(spec.name, "hash", "")
    context = RunContext(store=store, spec_hash="hash", base_dir=SMOKE.parent, judges=_judges)
    out = io.StringIO()
    progress = PlainProgress(Console(file=out, width=200))
    _Judge.ends.clear()
    for index, run in enumerate(runs):
        assert attempt(run, context, progress, index).status == store.run(run.run_id).status
    assert dict(_Judge.ends) == {"baseline": "pruned", "addrop": "failed"}
    assert all(status in get_args(EndStatus) for _, status in _Judge.ends)
    assert ": PRUNED worse than the median" in out.getvalue()
    assert ": FAILED InjectedFault: injected fault at step 2" in out.getvalue()


def test_a_slurm_watch_does_not_count_the_failure_its_job_retries(tmp_path: Path) -> None:
    """A run that failed before this invocation and is resubmitted still holds its old FAILED
    marker while its job waits in the queue: that is no outcome of this invocation."""
    pytest.importorskip("submitit")
    from addrop_cli.execution.backends.slurm import SlurmBackend, _Watch

    spec = load_spec(SMOKE, ["tasks=[sst2]", "seeds=[1]", "executor.backend=slurm"])
    run = expand(spec, SMOKE.parent)[0]
    store = ExperimentStore(tmp_path / "smoke")
    store.open_for_writing("smoke", "hash", "")
    folder = store.run(run.run_id)
    folder.path.mkdir(parents=True)
    folder.fail(FailedMetrics(task=run.task, variant=run.variant, seed=run.seed, error="old"))
    os.utime(folder.path / "FAILED", (time.time() - 60, time.time() - 60))
    context = RunContext(store=store, spec_hash="hash", base_dir=SMOKE.parent)
    backend = SlurmBackend(spec.executor.slurm)
    watch, summary = _Watch(run, "41"), Summary()
    progress = PlainProgress(Console(file=io.StringIO()))
    backend._check(watch, {"41": "PENDING"}, context, summary, progress)
    assert not watch.reported and not summary.failed  # still waiting for its job
    folder.fail(FailedMetrics(task=run.task, variant=run.variant, seed=run.seed, error="new"))
    backend._check(watch, {"41": "RUNNING"}, context, summary, progress)
    assert watch.reported and [reason for _, reason in summary.failed] == ["new"]
