"""Turn run records into the comparison table: pure functions, no file access, no rendering.

Rows are tasks, columns are method variants, a cell summarises one (task, variant) over seeds.

* **Seeds.** A cell counts the seeds with a finished run (``n``) against the seeds expected: the
  distinct seeds of the experiment's runs at the same sweep stage. A failed, unfinished or
  unreadable run is listed in ``Cell.missing`` and shows as ``n=4/5``; it is never averaged away.
* **Scores.** Each run's per-metric dev values (best or last epoch) and its task score (the GLUE
  rule, :func:`addrop_cli.data.metrics.task_score`: the mean of the task's metrics). Deltas, the
  best cell of a row, the statistics and the GLUE row use the task score; for one-metric tasks
  that is the metric itself.
* **Sweeps.** When a (task, variant) holds runs at several hyperparameter points, the table shows
  one point. Runs whose ``sweep.stage`` is ``"select"`` are the selection stage; runs at any other
  stage are the reported ones ("two-stage": selected on some seeds, reported on others). Without a
  reporting stage, the point with the best centre on the dev set is shown ("paper protocol: best
  of grid on the same dev set", optimistic by construction); the table says which.
* **Several experiments.** A variant name found in several experiments is merged into one column
  when its resolved run config (everything but task, seed, experiment and sweep) is the same in
  all of them (more seeds or more tasks of one method); otherwise each becomes its own column,
  keyed ``experiment/variant``.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from addrop_cli.data.metrics import (
    Agg,
    Summary,
    glue_score,
    higher_is_better,
    summarize,
    task_score,
)
from addrop_cli.data.tasks import TaskInfo, get_task, task_names
from addrop_cli.errors import SpecError
from addrop_cli.store.reader import SELECT_STAGE, RunRecord

Epoch = Literal["best", "last"]


_IDENTITY_IGNORED = ("format", "run_id", "experiment", "spec_hash", "task", "seed", "sweep")


@dataclass(frozen=True)
class Cell:
    """One (task, variant): per-seed results of the runs the table reports."""

    task: str
    variant: str
    seed_metrics: Mapping[int, Mapping[str, float]]
    """Seed -> dev metrics of its finished run."""
    seed_scores: Mapping[int, float]
    """Seed -> task score of its finished run."""
    metrics: Mapping[str, Summary]
    score: Summary
    expected: int
    """Seeds expected (distinct seeds of the experiment at this stage)."""
    missing: Mapping[int, str]
    """Seed -> why it has no result ("failed: ...", "incomplete", "corrupt", "no run")."""
    point: Mapping[str, Any] | None = None
    """The hyperparameter point shown when the variant was swept."""
    protocol: str | None = None
    """How the point was chosen, for sweeps; None for a single configuration."""
    delta: Mapping[str, float] | None = None
    """Centre minus the reference's centre, per metric; None for the reference itself."""
    score_delta: float | None = None
    best: bool = False
    runs: tuple[RunRecord, ...] = field(default=(), repr=False, compare=False)
    """The finished runs summarised (for the bootstrap, cost and plots)."""

    @property
    def n(self) -> int:
        return len(self.seed_scores)


@dataclass(frozen=True)
class GlueCell:
    """The GLUE score of one variant, from the centres of its task metrics."""

    score: float | None
    covered: tuple[str, ...]
    missing: tuple[str, ...]
    delta: float | None = None
    best: bool = False


@dataclass(frozen=True)
class TaskRow:
    """A table row's task facts (the registry's, or read off the runs for unknown tasks)."""

    name: str
    display: str
    metrics: tuple[str, ...]
    main_metric: str
    info: TaskInfo | None = field(default=None, repr=False)

    @property
    def higher_is_better(self) -> bool:
        try:
            return higher_is_better(self.main_metric)
        except KeyError:
            return True

    def score(self, metrics: Mapping[str, float]) -> float:
        """The task score of one run's metrics (the GLUE rule; the main metric if unknown)."""
        if self.info is not None and self.info.metrics:
            return task_score(self.info, metrics)
        return float(metrics[self.main_metric])


@dataclass(frozen=True)
class Table:
    """The main comparison table: every aggregate a renderer needs."""

    tasks: tuple[TaskRow, ...]
    variants: tuple[str, ...]
    reference: str
    cells: Mapping[tuple[str, str], Cell]
    """(task, variant) -> cell; absent where the variant never ran the task."""
    glue: Mapping[str, GlueCell] | None
    """Variant -> GLUE score; None when no GLUE task is in the table."""
    epoch: Epoch
    agg: Agg
    variant_info: Mapping[str, VariantInfo]

    def cell(self, task: str, variant: str) -> Cell | None:
        return self.cells.get((task, variant))


@dataclass(frozen=True)
class VariantInfo:
    """What a column is: its name(s) and method configuration."""

    key: str
    name: str
    experiments: tuple[str, ...]
    method: str
    method_params: Mapping[str, Any]


def variant_keys(records: Iterable[RunRecord]) -> dict[tuple[str, str], str]:
    """(experiment, variant name) -> column key: the name, or ``experiment/name`` on a clash."""
    identities: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        identities[r.variant][r.experiment].add(_identity(r))
    keys: dict[tuple[str, str], str] = {}
    for name, by_experiment in identities.items():
        same = len({frozenset(ids) for ids in by_experiment.values()}) == 1
        for experiment in by_experiment:
            keys[experiment, name] = name if same else f"{experiment}/{name}"
    return keys


def aggregate(
    records: Sequence[RunRecord],
    *,
    epoch: Epoch = "best",
    agg: Agg = "mean",
    reference: str | None = None,
    variant_order: Sequence[str] = (),
) -> Table:
    """Build the main table from every loaded run (finished or not).

    ``reference`` names the column deltas and tests compare against (default: the first variant
    whose method is ``baseline``, else the first column). ``variant_order`` lists variant names in
    the spec's order; columns follow it, the reference first. Raises :class:`SpecError` for an
    unknown reference.
    """
    keys = variant_keys(records)
    expected = _expected_seeds(records)
    by_cell: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        by_cell[r.task, keys[r.experiment, r.variant]].append(r)
    rows = _task_rows(records)
    info = _variant_info(records, keys)
    cells = {
        (task, variant): _cell(rows[task], variant, runs, expected, epoch, agg)
        for (task, variant), runs in by_cell.items()
    }
    ref = _reference(info, reference)
    variants = _order_variants(info, ref, variant_order)
    cells = _mark(cells, rows.values(), variants, ref)
    tasks = tuple(rows[t] for t in _order_tasks(rows))
    return Table(tasks, variants, ref, cells, _glue(cells, tasks, variants, ref), epoch, agg, info)


# ---------------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------------


def _cell(
    row: TaskRow,
    variant: str,
    runs: list[RunRecord],
    expected: Mapping[tuple[str, str | None], set[int]],
    epoch: Epoch,
    agg: Agg,
) -> Cell:
    runs, protocol = _reported_runs(row, runs, epoch, agg)
    seeds = set().union(*(expected[r.experiment, r.sweep_stage] for r in runs))
    seed_metrics: dict[int, dict[str, float]] = {}
    missing: dict[int, str] = {}
    done: list[RunRecord] = []
    for r in sorted(runs, key=lambda r: (r.status != "done", r.seed)):
        if r.status == "done" and r.seed not in seed_metrics:
            seed_metrics[r.seed] = r.dev_metrics(epoch) or {}
            done.append(r)
        elif r.seed not in seed_metrics and r.seed not in missing:
            missing[r.seed] = r.status if r.status != "failed" else f"failed: {r.reason}"
    for seed in seeds - seed_metrics.keys() - missing.keys():
        missing[seed] = "no run"
    ordered = sorted(seed_metrics)
    seed_scores = {s: row.score(seed_metrics[s]) for s in ordered}
    per_metric = {
        m: summarize([seed_metrics[s][m] for s in ordered if m in seed_metrics[s]], agg)
        for m in row.metrics
    }
    return Cell(
        task=row.name,
        variant=variant,
        seed_metrics={s: seed_metrics[s] for s in ordered},
        seed_scores=seed_scores,
        metrics=per_metric,
        score=summarize(list(seed_scores.values()), agg),
        expected=len(seeds | seed_metrics.keys()),
        missing=dict(sorted(missing.items())),
        point=_point(runs[0]) if protocol else None,
        protocol=protocol,
        runs=tuple(done),
    )


def _reported_runs(
    row: TaskRow, runs: list[RunRecord], epoch: Epoch, agg: Agg
) -> tuple[list[RunRecord], str | None]:
    """The runs of one hyperparameter point, and how that point was chosen (None: no sweep)."""
    selected = [r for r in runs if r.sweep_stage == SELECT_STAGE]
    reported = [r for r in runs if r.sweep_stage not in (None, SELECT_STAGE)]
    protocol = None
    if selected and reported:
        protocol = (
            f"two-stage: selected on seeds {_seed_list(selected)}, "
            f"reported on seeds {_seed_list(reported)}"
        )
        runs = reported
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        groups[json.dumps([r.sweep_point, r.method_params], sort_keys=True, default=str)].append(r)
    if len(groups) == 1:
        return runs, protocol
    sign = 1.0 if row.higher_is_better else -1.0

    def centre(group: list[RunRecord]) -> float:
        scores = [row.score(r.dev_metrics(epoch) or {}) for r in group if r.status == "done"]
        return sign * summarize(scores, agg).center if scores else float("-inf")

    best = max(groups.values(), key=centre)
    grid = f"paper protocol: best of grid ({len(groups)} points) on the same dev set"
    return best, protocol or grid


def _mark(
    cells: dict[tuple[str, str], Cell],
    rows: Iterable[TaskRow],
    variants: Sequence[str],
    ref: str,
) -> dict[tuple[str, str], Cell]:
    """Add deltas against the reference and flag the best cell of each row."""
    out = dict(cells)
    for row in rows:
        base = cells.get((row.name, ref))
        centres = {
            v: cells[row.name, v].score.center
            for v in variants
            if (row.name, v) in cells and cells[row.name, v].score.center is not None
        }
        pick = max if row.higher_is_better else min
        top = pick(centres.values()) if centres else None
        for v in variants:
            cell = cells.get((row.name, v))
            if cell is None:
                continue
            delta, score_delta = None, None
            if v != ref and base is not None:
                delta = {
                    m: s.center - base.metrics[m].center
                    for m, s in cell.metrics.items()
                    if s.center is not None and base.metrics[m].center is not None
                }
                if cell.score.center is not None and base.score.center is not None:
                    score_delta = cell.score.center - base.score.center
            best = top is not None and centres.get(v) == top
            out[row.name, v] = replace(cell, delta=delta, score_delta=score_delta, best=best)
    return out


def _glue(
    cells: Mapping[tuple[str, str], Cell],
    tasks: Sequence[TaskRow],
    variants: Sequence[str],
    ref: str,
) -> dict[str, GlueCell] | None:
    glue_names = {t.name for t in tasks if t.info is not None and t.info.is_glue}
    if not glue_names:
        return None
    raw = {}
    for v in variants:
        per_task = {
            t: {m: s.center for m, s in cells[t, v].metrics.items() if s.center is not None}
            for t in glue_names
            if (t, v) in cells
        }
        raw[v] = glue_score(per_task)
    ref_score = raw[ref].score if ref in raw else None
    scores = [g.score for g in raw.values() if g.score is not None]
    top = max(scores) if scores else None
    return {
        v: GlueCell(
            score=g.score,
            covered=g.covered,
            missing=tuple(t for t in g.missing if t in glue_names),
            delta=None if v == ref or g.score is None or ref_score is None else g.score - ref_score,
            best=g.score is not None and g.score == top,
        )
        for v, g in raw.items()
    }


# ---------------------------------------------------------------------------------------------
# Rows, columns, expected seeds
# ---------------------------------------------------------------------------------------------


def _task_rows(records: Sequence[RunRecord]) -> dict[str, TaskRow]:
    rows: dict[str, TaskRow] = {}
    for r in records:
        if r.task not in rows:
            rows[r.task] = _task_row(r.task, [x for x in records if x.task == r.task])
    return rows


def _task_row(name: str, runs: Sequence[RunRecord]) -> TaskRow:
    """The registry's facts; for a task it does not know, the facts the runs carry."""
    info = _task_info(name, runs)
    if info is not None and info.metrics:
        return TaskRow(name, info.display, info.metrics, info.main_metric, info)
    done = [r for r in runs if r.metrics is not None]
    metrics = tuple(dict.fromkeys(k for r in done for k in r.metrics["best"]["dev"]))
    main = next((str(r.metrics["main_metric"]) for r in done if "main_metric" in r.metrics), "")
    return TaskRow(name, name, metrics, main or (metrics[0] if metrics else ""), None)


def _task_info(name: str, runs: Sequence[RunRecord]) -> TaskInfo | None:
    from addrop_cli.errors import AddropError

    try:
        return get_task(name)
    except AddropError:
        pass
    return None  # a task of the user's own: the caller uses the facts its runs carry


def _order_tasks(rows: Mapping[str, TaskRow]) -> list[str]:
    glue = [t for t in task_names() if t in rows]
    return glue + sorted(t for t in rows if t not in glue)


def _variant_info(
    records: Sequence[RunRecord], keys: Mapping[tuple[str, str], str]
) -> dict[str, VariantInfo]:
    info: dict[str, VariantInfo] = {}
    for r in records:
        key = keys[r.experiment, r.variant]
        if key in info:
            if r.experiment not in info[key].experiments:
                experiments = (*info[key].experiments, r.experiment)
                info[key] = replace(info[key], experiments=experiments)
            continue
        info[key] = VariantInfo(key, r.variant, (r.experiment,), r.method, r.method_params)
    return info


def _reference(info: Mapping[str, VariantInfo], reference: str | None) -> str:
    if reference is None:
        baselines = [k for k, v in info.items() if v.method == "baseline"]
        return sorted(baselines)[0] if baselines else sorted(info)[0]
    if reference in info:
        return reference
    by_name = [k for k, v in info.items() if v.name == reference]
    if len(by_name) == 1:
        return by_name[0]
    import difflib

    close = difflib.get_close_matches(reference, list(info), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise SpecError(
        f"--reference: no variant {reference!r} in these runs; {hint}"
        f"choose one of {', '.join(sorted(info))}"
    )


def _order_variants(
    info: Mapping[str, VariantInfo], ref: str, spec_order: Sequence[str]
) -> tuple[str, ...]:
    rank = {name: i for i, name in enumerate(spec_order)}
    rest = sorted(
        (k for k in info if k != ref),
        key=lambda k: (rank.get(info[k].name, len(rank)), info[k].experiments, k),
    )
    return (ref, *rest)


def _expected_seeds(records: Iterable[RunRecord]) -> dict[tuple[str, str | None], set[int]]:
    """(experiment, sweep stage) -> the distinct seeds its runs use."""
    seeds: dict[tuple[str, str | None], set[int]] = defaultdict(set)
    for r in records:
        seeds[r.experiment, r.sweep_stage].add(r.seed)
    return seeds


def _identity(r: RunRecord) -> str:
    """The run's resolved config minus what varies within a variant (task, seed, sweep point)."""
    config = {k: v for k, v in r.config.items() if k not in _IDENTITY_IGNORED}
    if r.sweep_point:
        config.pop("method_params", None)
    return json.dumps(config, sort_keys=True, default=str)


def _point(r: RunRecord) -> dict[str, Any]:
    if r.sweep_point:
        return dict(r.sweep_point)
    return {k: v for k, v in r.method_params.items() if k != "method"}


def _seed_list(runs: Iterable[RunRecord]) -> str:
    return ", ".join(str(s) for s in sorted({r.seed for r in runs}))


# ---------------------------------------------------------------------------------------------
# Protocol and cost
# ---------------------------------------------------------------------------------------------


def describe_protocol(table: Table, records: Sequence[RunRecord]) -> list[str]:
    """The lines every table states under it: epoch, centre, selection split, sweep protocol."""
    epoch = (
        "best epoch (the evaluation with the best selection-split score)"
        if table.epoch == "best"
        else "last epoch"
    )
    lines = [
        f"Dev-set scores x100 at the {epoch}; {table.agg} ± sample std over seeds; "
        f"n=k/N: k finished seeds of the N the experiment ran; Δ against {table.reference}."
    ]
    done = [r for r in records if r.status == "done"]
    on_dev = {r.selects_on_dev for r in done}
    if on_dev == {True}:
        lines.append("Selection: dev set used for both early stopping and reporting.")
    elif on_dev == {False}:
        lines.append("Selection: held-out split for selection, dev for reporting.")
    elif on_dev:
        dev_variants = sorted({r.variant for r in done if r.selects_on_dev})
        lines.append(
            "Selection: mixed; dev set used for both early stopping and reporting in "
            f"{', '.join(dev_variants)}; held-out split for selection, dev for reporting elsewhere."
        )
    sweeps: dict[str, set[str]] = defaultdict(set)
    for cell in table.cells.values():
        if cell.protocol:
            sweeps[cell.protocol].add(cell.variant)
    for protocol, variants in sorted(sweeps.items()):
        lines.append(f"Hyperparameters ({', '.join(sorted(variants))}): {protocol}.")
    dev_sizes = sorted({(r.config.get("data") or {}).get("dev_size") for r in done} - {None})
    if dev_sizes:
        sizes = ", ".join(str(s) for s in dev_sizes)
        lines.append(f"Quick check: dev truncated to the first {sizes} examples.")
    return lines


@dataclass(frozen=True)
class CostRow:
    """Cost of one (task, variant), next to the reference's on the same task."""

    task: str
    variant: str
    n: int
    wall_time_s: float | None
    """Mean wall time per finished run."""
    samples_per_s: float | None
    """Mean training throughput."""
    peak_memory_mb: float | None
    """Largest peak memory over the runs."""
    wall_ratio: float | None = None
    """Mean wall time / the reference's (>1: slower)."""
    throughput_ratio: float | None = None
    """Mean samples/s / the reference's (<1: slower)."""


def cost_rows(table: Table) -> list[CostRow]:
    """Wall time, throughput and memory per (task, variant), with overhead against the reference."""
    rows: list[CostRow] = []
    for task in table.tasks:
        base = _cost(table.cell(task.name, table.reference))
        for v in table.variants:
            cost = _cost(table.cell(task.name, v))
            if cost is None:
                continue
            if base is not None:
                cost = replace(
                    cost,
                    wall_ratio=_ratio(cost.wall_time_s, base.wall_time_s),
                    throughput_ratio=_ratio(cost.samples_per_s, base.samples_per_s),
                )
            rows.append(cost)
    return rows


def _cost(cell: Cell | None) -> CostRow | None:
    if cell is None or not cell.runs:
        return None

    def values(key: str) -> list[float]:
        out = []
        for r in cell.runs:
            value = (r.metrics or {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(float(value))
        return out

    wall, speed = values("wall_time_s"), values("train_samples_per_s")
    memory = values("peak_memory_mb")
    return CostRow(
        task=cell.task,
        variant=cell.variant,
        n=len(cell.runs),
        wall_time_s=statistics.fmean(wall) if wall else None,
        samples_per_s=statistics.fmean(speed) if speed else None,
        peak_memory_mb=max(memory) if memory else None,
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b
