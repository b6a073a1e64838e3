"""MkDocs hooks: the repository files that the docs link to travel with the site.

A page links to a file outside docs/ the way GitHub reads it, relative to the page
(``../results/prior/REPORT.md``, ``../examples/trainer_glue.py``). MkDocs only knows the files
under docs/, so this hook adds each linked repository file to the site under ``repo/`` (a linked
Markdown report becomes a page, with the images it links to) and points the link there. A link
to a file that does not exist is left as it is, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

LINK = re.compile(r"(\]\()(\.\./[^)#\s]+)")
"""A Markdown link or image whose target leaves docs/ (the part before any #anchor)."""
PREFIX = "repo"


def _outside_targets(markdown: str, page_dir: str) -> list[str]:
    """Repository paths (relative to the repository root) that a docs page links to."""
    found = []
    for _, target in LINK.findall(markdown):
        path = posixpath.normpath(posixpath.join("docs", page_dir, target))
        if not path.startswith("../"):
            found.append(path)
    return found


def _linked_from(repo_file: Path) -> list[Path]:
    """The files a repository Markdown file links to in its own folder (a report's plots)."""
    if repo_file.suffix != ".md":
        return []
    targets = re.findall(r"\]\(([^)#\s:]+)\)", repo_file.read_text(encoding="utf-8"))
    return [(repo_file.parent / t).resolve() for t in targets if (repo_file.parent / t).is_file()]


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = Path(config["config_file_path"]).parent.resolve()
    docs = Path(config["docs_dir"])
    wanted: list[Path] = []
    for page in docs.rglob("*.md"):
        page_dir = page.parent.relative_to(docs).as_posix()
        wanted += [root / p for p in _outside_targets(page.read_text(encoding="utf-8"), page_dir)]
    seen: set[Path] = set()
    while wanted:
        path = wanted.pop().resolve()
        if path in seen or not path.is_file() or root not in path.parents:
            continue
        seen.add(path)
        wanted += _linked_from(path)
        src_uri = f"{PREFIX}/{path.relative_to(root).as_posix()}"
        files.append(File.generated(config, src_uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    page_dir = posixpath.dirname(page.file.src_uri)

    def point_into_site(match: re.Match[str]) -> str:
        path = posixpath.normpath(posixpath.join("docs", page_dir, match.group(2)))
        in_site = f"{PREFIX}/{path}"
        if files.get_file_from_path(in_site) is None:
            return match.group(0)  # missing: the strict build reports the link
        return match.group(1) + posixpath.relpath(in_site, page_dir or ".")

    return LINK.sub(point_into_site, markdown)
