"""Commands that read the results store: ``status``, ``report``, ``predict``, ``track``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from addrop_cli.cli.app import app, console
from addrop_cli.cli.options import ResultsOpt, one_spec, split_args
from addrop_cli.errors import SpecError


@app.command()
def status(
    args: Annotated[
        list[str],
        typer.Argument(help="results/<name>, or SPEC.yaml then key=value overrides."),
    ],
    results: ResultsOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="List finished runs too.")] = False,
    run: Annotated[
        str | None, typer.Option("--run", help="Only this run (its id, or a unique prefix).")
    ] = None,
) -> None:
    """Show what each run is doing: queued, running, done, failed, interrupted (not started).

    Reads the store, the run locks on this machine and the Slurm queue; never takes a lock.

    [bold]Examples[/bold]

      addrop status results/pq-sweep

      addrop status experiments/pq-sweep.yaml --all

      addrop status results/smoke --run 3f2a
    """
    from addrop_cli.execution.inspection.status import status_command

    targets, overrides = split_args(args)
    if len(targets) != 1:
        raise SpecError(
            f"expected one results folder or spec file, got {len(targets)}: "
            f"{' '.join(map(str, targets)) or '(none)'}; e.g. addrop status results/smoke"
        )
    code = status_command(
        targets[0], overrides, results_root=results, show_all=show_all, run=run, console=console
    )
    raise typer.Exit(code)


@app.command()
def report(
    paths: Annotated[list[Path], typer.Argument(help="Experiment folders under results/.")],
    epoch: Annotated[str, typer.Option(help="best or last epoch metrics.")] = "best",
    agg: Annotated[str, typer.Option(help="mean or median over seeds.")] = "mean",
    reference: Annotated[
        str | None, typer.Option(help="Variant to compare against (default: the baseline).")
    ] = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="terminal, markdown (report.md and the self-contained report.html), csv, latex, "
            "html, json; repeatable [default: terminal and markdown].",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for report files and plots.")] = None,
    plots: Annotated[bool, typer.Option(help="Write plots (PNG and SVG).")] = True,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw", help="Also write runs.csv: one row per run and evaluation, for notebooks."
        ),
    ] = False,
) -> None:
    """Turn stored runs into comparison tables, statistics and plots: printed, and written to
    <folder>/report/ as report.md with a self-contained report.html beside it.

    [bold]Examples[/bold]

      addrop report results/smoke

      addrop report results/quickstart --format markdown --format csv --out report/

      addrop report results/glue-bert results/glue-roberta --epoch last

      addrop report results/quickstart --format csv --raw
    """
    if epoch not in ("best", "last"):
        raise SpecError(f"--epoch: must be best or last, got {epoch!r}")
    if agg not in ("mean", "median"):
        raise SpecError(f"--agg: must be mean or median, got {agg!r}")
    from addrop_cli.report import report_command

    code = report_command(
        paths,
        epoch=epoch,  # type: ignore[arg-type]
        agg=agg,  # type: ignore[arg-type]
        reference=reference,
        formats=formats or ["terminal", "markdown"],
        out=out,
        plots=plots,
        raw=raw,
        console=console,
    )
    raise typer.Exit(code)


@app.command()
def predict(
    args: Annotated[
        list[str],
        typer.Argument(help="SPEC.yaml then key=value overrides; or, with --text/--file, RESULTS."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Leaderboard files: a folder [default: <results>/<experiment>/leaderboard]. "
            "With --text/--file: a TSV file [default: print the predictions]."
        ),
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="Method variant whose runs predict (default: best).")
    ] = None,
    results: ResultsOpt = None,
    run: Annotated[
        str | None, typer.Option("--run", help="With --text/--file: the run (id or unique prefix).")
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", help="A text to label (repeatable; a pair: tab between them)."),
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Texts, one per line.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Write GLUE leaderboard files (SST-2.tsv, AX.tsv, ...) from stored checkpoints, or label
    any text with one stored run's best checkpoint.

    [bold]Examples[/bold]

      addrop predict experiments/glue.yaml train.save_checkpoint=true --out submission/

      addrop predict results/smoke --run 3f2a9c1e7d04 --text "a gripping, funny film"

      addrop predict results/smoke --run 3f2a9c1e7d04 --file reviews.txt --out labels.tsv
    """
    if text is not None or file is not None:
        raise typer.Exit(_predict_texts(args, run, text or [], file, out, device))
    if run is not None:
        raise SpecError(
            f"--run {run}: labels texts: give them with --text 'a sentence' or --file "
            f"inputs.txt, e.g. addrop predict {' '.join(args)} --run {run} --text 'a sentence'"
        )
    from addrop_cli.execution.inspection.predict import predict_command
    from addrop_cli.spec.load import load_spec

    path, overrides = one_spec(args)
    spec = load_spec(path, overrides)
    code = predict_command(
        spec, path, out=out, variant=variant, results_root=results, console=console
    )
    raise typer.Exit(code)


def _predict_texts(
    args: list[str],
    run: str | None,
    text: list[str],
    file: Path | None,
    out: Path | None,
    device: str,
) -> int:
    """``addrop predict RESULTS --run ID --text ... | --file FILE``."""
    from addrop_cli.execution.inspection.predict_text import predict_text_command

    if out is not None and out.is_dir():
        raise SpecError(
            f"--out {out}: is a folder; with --text/--file --out is the TSV file to write, "
            "e.g. --out labels.tsv (a folder takes leaderboard files: addrop predict "
            "SPEC.yaml --out DIR)"
        )
    folder, overrides = one_spec(args)
    if overrides or not folder.is_dir():
        raise SpecError(
            f"{' '.join(args)}: --text/--file take a results folder and no overrides; "
            "e.g. addrop predict results/smoke --run ID --text 'a sentence'"
        )
    return predict_text_command(folder, run, text, file, out=out, device=device, console=console)


@app.command()
def track(
    path: Annotated[Path, typer.Argument(help="results/<name>: an experiment folder.")],
    to: Annotated[str, typer.Option("--to", help="tensorboard, mlflow or wandb.")],
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="Put the tracker's files here [default: results/<name>/tracking]."
        ),
    ] = None,
) -> None:
    """Send the finished runs of a results folder to a tracker, from the store's records.

    Each done run becomes a tracker run: its config, tags and every evaluation (not the
    per-step training curves, which the store does not keep).

    [bold]Examples[/bold]

      addrop track results/smoke --to mlflow

      addrop track results/smoke --to tensorboard --dir runs/
    """
    from addrop_cli.execution.inspection.export import export_runs

    raise typer.Exit(export_runs(path, to, console, tracking_dir=folder))
