"""Run the addrop CLI in-process and capture exit code and output (faster than a subprocess)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from addrop_cli import cli


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    old_argv = sys.argv
    sys.argv = ["addrop", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
