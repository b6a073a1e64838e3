"""Branch coverage per layer of addrop_cli, from the data `make coverage` collected.

    python tools/coverage_layers.py store execution engine --fail-under store=90 execution=90

Prints each layer's files that miss something (lines and branches not walked), then one line
per layer; exits 1 when a layer named in --fail-under is below its floor.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent


def layer_percent(cov: coverage.Coverage, layer: str, detail: bool) -> float:
    """The layer's combined line and branch coverage, in percent."""
    out = io.StringIO()
    percent = cov.report(include=[f"{ROOT}/addrop_cli/{layer}/*"], file=out)
    if detail:
        print(out.getvalue().rstrip())
    return percent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("layers", nargs="+")
    parser.add_argument("--fail-under", nargs="*", default=[], metavar="LAYER=PERCENT")
    parser.add_argument("--quiet", action="store_true", help="only the per-layer lines")
    args = parser.parse_args()
    floors = {k: float(v) for k, v in (item.split("=", 1) for item in args.fail_under)}
    cov = coverage.Coverage(config_file=str(ROOT / "pyproject.toml"))
    cov.load()
    results = {layer: layer_percent(cov, layer, not args.quiet) for layer in args.layers}
    print("\nbranch coverage (lines and branches) per layer:")
    failed = []
    for layer, percent in results.items():
        floor = floors.get(layer)
        verdict = "" if floor is None else (" ok" if percent >= floor else f" < {floor:.0f}%")
        print(f"  {layer + '/':<12} {percent:5.1f}%{verdict}")
        if floor is not None and percent < floor:
            failed.append(layer)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
