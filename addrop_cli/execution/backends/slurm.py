"""The ``slurm`` back-end: one submitit job array per call, watched through the store.

Each array task runs one run (or ``runs_per_job`` runs) with
:func:`addrop_cli.execution.attempt.context.attempt`, the same code as the local back-ends: the
store lock keeps a run from being done twice and the DONE marker keeps a finished run from being
redone. A job that reaches its time limit or is pre-empted gets submitit's signal, is requeued by
:class:`RunJob.checkpoint`, and on restart skips its finished runs and goes on with its interrupted
one from its latest training state (``<run>/state/``). The submitting process waits, reading
completion from the store (not from ``sacct``, which needs Slurm's accounting database) and queue
state from ``squeue``. Ctrl-C leaves the jobs running; ``addrop status`` shows them and rerunning
the same command waits for them again instead of submitting them twice
(``<results>/<experiment>/slurm/jobs.jsonl`` records what was submitted).
"""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console

from addrop_cli.errors import RunError, SpecError, first_line
from addrop_cli.execution.attempt.context import (
    RunContext,
    Summary,
    attempt,
    record_lost,
    settled_outcome,
    with_threads,
)
from addrop_cli.execution.attempt.display import PlainProgress
from addrop_cli.execution.backends.base import LiveRun
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.spec.schema import ExperimentSpec, SlurmSpec
from addrop_cli.store.atomic import now_iso
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.status import LiveStatus
from addrop_cli.words import install_hint, plural

JOBS_FILE = "jobs.jsonl"
QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED"}
"""squeue states of a job that has not (or not yet again) started its run."""


def slurm_available() -> bool:
    """True when the Slurm client commands are installed and the controller answers."""
    if not shutil.which("sbatch") or not shutil.which("squeue"):
        return False
    try:
        subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, check=True, timeout=20)
    except (subprocess.SubprocessError, OSError):
        return False
    return True


def squeue_states() -> dict[str, str]:
    """This user's jobs in the queue: job id (``123`` or ``123_4``) -> state (``PENDING``...)."""
    result = subprocess.run(
        ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RunError(
            f"squeue failed ({result.stderr.strip() or result.returncode}); check that the Slurm "
            "controller is up (sinfo)"
        )
    states = {}
    for line in result.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id:
            states[job_id] = state
    return states


def submitted_jobs(store: ExperimentStore) -> dict[str, dict[str, Any]]:
    """run id -> the latest job submitted for it (from ``slurm/jobs.jsonl``)."""
    path = store.root / "slurm" / JOBS_FILE
    jobs: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return jobs
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            jobs[entry["run_id"]] = entry
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line from a killed submitter
    return jobs


try:
    from submitit.helpers import Checkpointable
except ImportError:  # submitit is optional (the slurm extra)

    class Checkpointable:  # type: ignore[no-redef]
        """Stand-in so this module imports without submitit; the back-end refuses to start."""


class RunJob(Checkpointable):
    """What an array task runs: its runs, one after another, under the store's locks.

    A submitit ``Checkpointable``: on a time-out or pre-emption submitit calls
    ``checkpoint``, which resubmits the same call (the job is requeued); the new attempt skips
    the runs that are DONE and resumes the interrupted one from its latest training state.
    """

    def __call__(self, runs: list[RunSpec], context: RunContext, threads: int | None) -> list[str]:
        progress = PlainProgress(Console(soft_wrap=True))
        progress.experiment_start(len(runs), len(runs))
        statuses = []
        for index, run in enumerate(runs):
            outcome = attempt(with_threads(run, threads), context, progress, index)
            statuses.append(outcome.status)
        return statuses


def job_log_tail(folder: Path, job_id: str) -> str:
    """The last line of a job's stderr log (why it died), or ''."""
    for log in sorted((folder / job_id).glob(f"{job_id}_*_log.err")):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line and not line.startswith("srun:")]
        if lines:
            return lines[-1][:300]
    return ""


@dataclass
class _Watch:
    run: RunSpec
    job_id: str
    reported: bool = False
    gone_since: float | None = None


class SlurmBackend:
    """Submit pending runs as one job array, then wait for the store to hold every result."""

    journal: ClassVar[bool] = True  # its jobs run on other hosts: no SQLite over NFS

    poll_s = 3.0
    grace_s = 30.0
    """How long a run may lack a marker after its job left the queue before it is recorded FAILED
    (a shared filesystem can show files late)."""

    def __init__(self, options: SlurmSpec, *, threads: int | None = None) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise SpecError(
                f"executor.backend: slurm needs submitit; {install_hint('slurm')}; "
                "or use --backend local"
            ) from None
        self.options = options
        self.threads = threads or options.cpus

    @classmethod
    def from_spec(
        cls, spec: ExperimentSpec, base_dir: Path, *, plain: bool, console: Console | None
    ) -> SlurmBackend:
        del base_dir, plain, console  # the jobs print to their own logs
        return cls(spec.executor.slurm, threads=spec.executor.threads)

    @property
    def slots(self) -> int:
        return self.options.array_parallelism

    @staticmethod
    def spec_problems(spec: ExperimentSpec, source: str) -> list[str]:
        """Local-pool settings it would ignore (one job per run, one GPU each)."""
        if spec.executor.runs_per_gpu == 1:
            return []
        return [
            f"{source}: executor.runs_per_gpu: {spec.executor.runs_per_gpu} applies to the local "
            "pool; the Slurm back-end runs one job per run on its own GPU; remove it "
            "(or use --backend local)"
        ]

    @staticmethod
    def live_runs(store: ExperimentStore) -> dict[str, LiveRun]:
        """Every run it submitted for ``store``, with its job while the queue holds it."""
        jobs = submitted_jobs(store) if store.root.exists() else {}
        queue = squeue_states() if jobs and slurm_available() else {}
        found = {}
        for run_id, job in jobs.items():
            state = queue.get(job["job_id"])
            live: LiveStatus | None = None
            if state == "RUNNING":
                live = "running"
            elif state in QUEUED_STATES:
                live = "queued"
            where = f"Slurm job {job['job_id']}" if state else ""
            found[run_id] = LiveRun(job.get("label", run_id), where, live)
        return found

    def execute(
        self, runs: Sequence[RunSpec], context: RunContext, summary: Summary, console: Console
    ) -> None:
        if not slurm_available():
            raise RunError(
                "executor.backend: slurm, but no Slurm cluster answers here (sbatch/squeue "
                "missing or the controller is down); run on a login node, or use --backend local"
            )
        queue = squeue_states()
        known = submitted_jobs(context.store)
        watching: list[_Watch] = []
        to_submit: list[RunSpec] = []
        for run in runs:
            job = known.get(run.run_id)
            if job is not None and job["job_id"] in queue:
                watching.append(_Watch(run, job["job_id"]))  # still queued or running
            else:
                to_submit.append(run)
        if watching:
            console.print(
                f"slurm: {plural(len(watching), 'run')} already queued or running from an earlier "
                "submission; waiting for them instead of submitting them again",
                highlight=False,
            )
        if to_submit:
            watching += self.submit(to_submit, context, console)
        self.wait(watching, context, summary, console)

    def submit(
        self, runs: Sequence[RunSpec], context: RunContext, console: Console
    ) -> list[_Watch]:
        """One job array: ``runs_per_job`` runs per array task."""
        import submitit

        folder = self.options.log_dir or context.store.root / "slurm"
        executor = submitit.SlurmExecutor(
            folder=Path(folder) / "%j", max_num_timeout=self.options.max_requeues
        )
        executor.update_parameters(**self.sbatch_parameters(context.store.root.name))
        size = self.options.runs_per_job
        chunks = [list(runs[i : i + size]) for i in range(0, len(runs), size)]
        job = RunJob()
        jobs = executor.map_array(
            job, chunks, [context] * len(chunks), [self.threads] * len(chunks)
        )
        lines = []
        watching = []
        for chunk, submitted in zip(chunks, jobs, strict=True):
            for run in chunk:
                watching.append(_Watch(run, str(submitted.job_id)))
                lines.append(
                    json.dumps(
                        {
                            "run_id": run.run_id,
                            "label": run.label,
                            "job_id": str(submitted.job_id),
                            "submitted": now_iso(),
                        }
                    )
                )
        record = context.store.root / "slurm" / JOBS_FILE
        record.parent.mkdir(parents=True, exist_ok=True)
        with open(record, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        array = str(jobs[0].job_id).split("_")[0] if jobs else "?"
        shape = f"an array of {len(chunks)} tasks" if len(chunks) > 1 else "one job"
        console.print(
            f"slurm: submitted job {array} ({shape}, {len(runs)} runs; logs in {folder})",
            highlight=False,
        )
        return watching

    def sbatch_parameters(self, name: str) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters from the spec's ``executor.slurm``."""
        o = self.options
        params: dict[str, Any] = {
            "job_name": f"addrop-{name}",
            "time": o.time_min,
            "cpus_per_task": o.cpus,
            "mem": f"{int(o.mem_gb * 1024)}MB",
            "array_parallelism": o.array_parallelism,
            "ntasks_per_node": 1,
            "signal_delay_s": min(90, max(10, o.time_min * 60 // 10)),
        }
        if o.gpus:
            params["gpus_per_node"] = o.gpus
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(o, key):
                params[key] = getattr(o, key)
        if o.setup:
            params["setup"] = list(o.setup)
        if o.extra:
            params["additional_parameters"] = dict(o.extra)
        return params

    def wait(
        self, watching: list[_Watch], context: RunContext, summary: Summary, console: Console
    ) -> None:
        """Poll the store and the queue until every run is DONE, FAILED or lost."""
        progress = PlainProgress(console)
        last_counts: tuple[int, int] | None = None
        try:
            while True:
                queue = squeue_states()
                open_ = [w for w in watching if not w.reported]
                for w in open_:
                    self._check(w, queue, context, summary, progress)
                open_ = [w for w in watching if not w.reported]
                if not open_:
                    return
                queued = sum(queue.get(w.job_id) in QUEUED_STATES for w in open_)
                counts = (queued, len(open_) - queued)
                if counts != last_counts:
                    console.print(
                        f"slurm: {counts[0]} queued, {counts[1]} running, "
                        f"{len(watching) - len(open_)} finished",
                        highlight=False,
                    )
                    last_counts = counts
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            console.print(
                "slurm: stopped waiting; the jobs keep running (`addrop status` shows them, "
                "`scancel` stops them); run the same command again to wait for them",
                highlight=False,
            )
            raise

    def _check(
        self,
        w: _Watch,
        queue: dict[str, str],
        context: RunContext,
        summary: Summary,
        progress: PlainProgress,
    ) -> None:
        # a FAILED marker from before this invocation is the failure its job retries
        known = settled_outcome(context.store.run(w.run.run_id), context)
        if known is not None:
            detail = f"(job {w.job_id}) {first_line(known.reason)}".rstrip()
            progress.run_end(w.run, known.status, detail)
            summary.record(w.run, known.status, known.reason)
            w.reported = True
        elif w.job_id in queue:
            w.gone_since = None
        elif w.gone_since is None:
            w.gone_since = time.monotonic()
        elif time.monotonic() - w.gone_since > self.grace_s:
            # the same policy as a dead pool worker: FAILED with the reason, retried next time
            logs = Path(self.options.log_dir or context.store.root / "slurm")
            tail = job_log_tail(logs, w.job_id)
            reason = (
                f"job {w.job_id} left the queue without finishing the run"
                + (f" ({tail})" if tail else "")
                + f"; its log is in {logs / w.job_id}"
            )
            outcome = record_lost(w.run, context, reason)
            summary.record(w.run, outcome.status, outcome.reason)
            detail = "(another addrop process is running it)" if outcome.status == "busy" else ""
            progress.run_end(w.run, outcome.status, detail or outcome.reason)
            w.reported = True
