"""The ``addrop`` command line: parses arguments, calls the package, prints. No ML code here.

One module per command group (experiments: run/sweep/validate; results: status/report/predict;
listing: list ...), the shared options in options.py, the Typer app and consoles in app.py and
the entry point in main.py.
"""

from addrop_cli.cli.app import app
from addrop_cli.cli.main import main

__all__ = ["app", "main"]
