"""The house rules that keep the package readable, checked so they do not erode: no module over
450 lines and no function over 60 (docs/development.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "addrop_cli"
MODULE_LINES, FUNCTION_LINES = 450, 60


def test_no_module_is_longer_than_the_house_allows() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_LINES
    }
    assert long == {}, f"split these modules (at most {MODULE_LINES} lines)"


def test_no_function_is_longer_than_the_house_allows() -> None:
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = length
    assert long == {}, f"split these functions (at most {FUNCTION_LINES} lines)"


def test_the_install_hint_has_one_home() -> None:
    """Every message that says how to install an extra says it through words.install_hint: a
    clone's line and an installed package's, never one of them alone."""
    spelled = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "words.py" and ("addrop-cli[" in p.read_text() or "-e '.[" in p.read_text())
    ]
    assert spelled == [], spelled
