"""The README and the documentation site (docs/, mkdocs.yml) stay short, linked and true.

Checks what `mkdocs build --strict` (make docs) cannot: the README's length and links (it is not
part of the site), that every page under docs/ is in the nav, and that what the docs say about
defaults and mistakes is what the code says: the annotated spec against the schema's defaults,
the library's configuration table against ``AddropConfig``, the mistakes page against the table
of tests/cli/test_bad_input.py. To rewrite the mistakes page's table from real runs::

    PYTHONPATH=tests:tests/cli .venv/bin/python tests/house/test_docs.py --mistakes
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from test_bad_input import MISTAKES, Mistake, _short

from addrop_cli.methods.config import AddropParams
from addrop_cli.methods.registry import METHODS
from addrop_cli.spec.schema import ExperimentSpec

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.rglob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")
MISTAKES_PAGE = DOCS / "mistakes.md"
TABLE_HEAD = "| Mistake | Command (example) | Exit | What addrop says |"


def _without_code(text: str) -> str:
    """Markdown with fenced code blocks and inline code removed (links there are not links)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(page: Path) -> set[str]:
    """Heading anchors as GitHub and MkDocs' toc make them (lower case, punctuation dropped)."""
    headings = re.findall(r"^#+ (.+)$", _without_code(page.read_text(encoding="utf-8")), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(_without_code(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
            broken.append(f"{target}: no heading #{anchor} in {where.name}")
    return broken


def test_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= 300, f"README.md has {lines} lines; move sections into docs/ (at most 300)"


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert _broken_links(page) == [], f"{page.relative_to(ROOT)}: broken links"


def _nav_pages(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    items = nav.values() if isinstance(nav, dict) else nav
    return set().union(*(_nav_pages(item) for item in items))


def test_every_docs_page_is_in_the_nav() -> None:
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page"


# ------------------------------------------------------------------------------ defaults


def _annotated_spec() -> dict[str, Any]:
    """The YAML block of docs/specs.md that lists every key."""
    text = (DOCS / "specs.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "executor:" in b)
    return yaml.safe_load(block)


def _missing_keys(model: type[BaseModel], given: dict[str, Any], where: str) -> list[str]:
    """Fields of ``model`` (and of its nested models given as mappings) that ``given`` lacks."""
    missing = []
    for name, field in model.model_fields.items():
        if name not in given and name != "method":
            missing.append(f"{where}{name}")
        inner = field.annotation
        nested = isinstance(inner, type) and issubclass(inner, BaseModel)
        if nested and isinstance(given.get(name), dict):
            missing += _missing_keys(inner, given[name], f"{where}{name}.")
    return missing


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-5}}`` -> ``{"train.lr": 1e-5}``."""
    if not isinstance(value, dict) or not value:
        return {prefix.rstrip("."): value}
    return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}


def test_the_annotated_spec_lists_every_key_at_its_default() -> None:
    documented = _annotated_spec()
    variants = documented["methods"]
    for name, params in variants.items():
        params.setdefault("method", name)
    missing = _missing_keys(ExperimentSpec, documented, "")
    for name, params in variants.items():
        missing += _missing_keys(METHODS[params["method"]].params, params, f"methods.{name}.")
    assert missing == [], "docs/specs.md's annotated spec lacks these keys"
    required = {key: documented[key] for key in ("name", "tasks", "seeds")}
    required["model"] = {"name_or_path": documented["model"]["name_or_path"]}
    required["methods"] = {name: {"method": p["method"]} for name, p in variants.items()}
    as_documented = _flat(ExperimentSpec.model_validate(documented).model_dump())
    at_defaults = _flat(ExperimentSpec.model_validate(required).model_dump())
    differ = {k: v for k, v in as_documented.items() if at_defaults.get(k, "(absent)") != v}
    assert differ == {}, "docs/specs.md shows values that are not the defaults"


def test_the_library_configuration_table_shows_the_defaults() -> None:
    text = (DOCS / "library.md").read_text(encoding="utf-8")
    section = text.split("## The configuration")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(\w+)` \| `?([^|`]+?)`? \|", section, re.M)
    defaults = AddropParams().model_dump()
    shown = {field: yaml.safe_load(value) for field, value in rows}
    assert set(shown) == set(defaults) - {"method"}
    assert shown == {field: defaults[field] for field in shown}


def _minutes(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"[Aa]bout (\d+) minutes", text)}


def test_each_quick_start_time_is_said_once() -> None:
    """make quick's time is the README quick start's heading (quick.yaml says none of its own);
    the larger quick start's is quickstart.yaml's, the guide's heading and the README's pointer."""
    quick_spec = (ROOT / "experiments" / "quick.yaml").read_text().split("\nname:")[0]
    spec = (ROOT / "experiments" / "quickstart.yaml").read_text().split("\nname:")[0]
    readme = README.read_text(encoding="utf-8").split("## Quick start")[1].split("\n## ")[0]
    guide = (DOCS / "guide.md").read_text(encoding="utf-8").split("## Quick start")[1]
    heading, body = readme.splitlines()[0], "\n".join(readme.splitlines()[1:])
    assert len(_minutes(heading)) == 1 and _minutes(quick_spec) == set(), _minutes(quick_spec)
    said = [_minutes(spec), _minutes(body), _minutes(guide.splitlines()[0])]
    assert all(len(s) == 1 for s in said) and len(set().union(*said)) == 1, said


def _example_parser() -> argparse.ArgumentParser:
    path = ROOT / "examples" / "trainer_glue.py"
    spec = importlib.util.spec_from_file_location("trainer_glue", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def test_the_example_help_describes_every_option_with_its_default() -> None:
    parser = _example_parser()
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        assert action.help, f"{action.option_strings}: no description in --help"
        if all(action.default is not nothing for nothing in (None, False, argparse.SUPPRESS)):
            assert f"(default: {action.default})" in text, action.option_strings


def test_the_example_defaults_are_the_quick_start_spec() -> None:
    spec = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
    defaults = vars(_example_parser().parse_args(["--glue-dir", "."]))
    addrop = spec["methods"]["addrop"]
    assert defaults["model"] == spec["model"]["name_or_path"]
    assert defaults["train_size"] == spec["data"]["train_size"]
    assert (defaults["p"], defaults["q"]) == (addrop["p"], addrop["q"])
    for key in ("epochs", "lr", "batch_size", "max_length"):
        assert defaults[key] == spec["train"][key], key


# ------------------------------------------------------------------------------ mistakes


def _table_rows(text: str) -> list[str]:
    body = text.split(TABLE_HEAD)[1].split("\n\n")[0]
    return body.strip().splitlines()[1:]


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


def _expected_start(mistake: Mistake) -> list[str]:
    """The first three cells of a mistake's row, and the part its message cell must hold."""
    nowhere = Path("/nonexistent-tmp")
    command = _short("addrop " + " ".join(mistake.args), nowhere)
    said = _short(mistake.expect, nowhere) if not mistake.skip else "not reproducible here"
    return [mistake.what.replace("|", "\\|"), f"`{command}`", str(mistake.code), said]


def test_the_mistakes_page_is_the_bad_input_table() -> None:
    rows = _table_rows(MISTAKES_PAGE.read_text(encoding="utf-8"))
    assert len(rows) == len(MISTAKES), (
        "docs/mistakes.md and tests/cli/test_bad_input.py MISTAKES differ in length; "
        "run PYTHONPATH=tests:tests/cli .venv/bin/python tests/house/test_docs.py --mistakes"
    )
    for row, mistake in zip(rows, MISTAKES, strict=True):
        what, command, code, said = _expected_start(mistake)
        cells = _cells(row)
        assert cells[:3] == [what, command, code], f"row {mistake.id}: {cells[:3]}"
        assert said in cells[3], f"row {mistake.id}: {said!r} not in {cells[3]!r}"


def write_mistakes_table() -> None:
    """Rewrite the mistakes page's table from real runs of every row."""
    from test_bad_input import markdown_table

    text = MISTAKES_PAGE.read_text(encoding="utf-8")
    before, rest = text.split(TABLE_HEAD)
    after = rest.split("\n\n", 1)[1] if "\n\n" in rest else ""
    text = before + markdown_table() + "\n" + (f"\n{after}" if after.strip() else "")
    MISTAKES_PAGE.write_text(text, encoding="utf-8")


if __name__ == "__main__" and sys.argv[1:] == ["--mistakes"]:
    sys.path.insert(0, str(ROOT))
    write_mistakes_table()
