"""Docs that run: every shell block (```bash, ```console) and every Python block of README.md and
docs/*.md is executed, in document order, in a copy of the repository's committed files with the
installed venv's ``addrop`` first on PATH, offline (HF_HUB_OFFLINE=1) and with ADDROP_GLUE_DIR set
when the real GLUE folder exists.

A block that must not run here carries a marker on the line right before its fence,
``<!-- not-run: REASON -->`` with REASON one of :data:`NOT_RUN` (docs/development.md). Marked
blocks are skipped with their reason (``pytest -rs`` lists them) and
``test_every_skipped_block_is_listed`` prints the whole list and fails on an unknown reason, so
nothing is skipped silently. In the blocks ``path/to/glue_data`` and ``<glue_data>`` stand for
the GLUE folder: without one such a block is skipped, saying so. A ``console`` block's ``$ ``
lines are its commands; the report table rows it shows must be the ones they print.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(bash|console|python)\n(.*?)^```$", re.M | re.S)
MARKER = re.compile(r"<!-- not-run: ([a-z-]+) -->")
GLUE_PLACEHOLDERS = ("path/to/glue_data", "<glue_data>")
BLOCK_TIMEOUT_S = 600

NOT_RUN = {
    "install": "installs packages (make install, pip): this test runs in the installed venv",
    "suite": "runs the test suite or the linters, which hold this test",
    "long-run": "trains a real model for minutes; its time is stated beside it",
    "long-study": "a whole study: hours of training",
    "gpu": "needs a GPU",
    "slurm": "needs a Slurm cluster",
    "network": "downloads from the Hugging Face Hub",
    "fragment": "a piece of a user's own script: it names objects it does not define",
    "needs-runs": "needs the stored runs of a long experiment",
    "synopsis": "a command's form with placeholders (SPEC.yaml, NAME), not a command to run",
}
"""The reasons a block may give for not running, and what each means."""


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    code: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
            marker = MARKER.fullmatch(before.strip())
            blocks.append(
                Block(
                    page=page.relative_to(ROOT).as_posix(),
                    line=text[: match.start()].count("\n") + 1,
                    language=match.group(1),
                    code=match.group(2),
                    marker=marker.group(1) if marker else None,
                )
            )
    return blocks


BLOCKS = _blocks()


def _glue_dir() -> str | None:
    env = os.environ.get("ADDROP_GLUE_DIR", "").strip()
    candidates = [Path(env)] if env else [ROOT.parent / "shared" / "glue_data"]
    found = [p for p in candidates if (p / "SST-2" / "train.tsv").is_file()]
    return str(found[0].resolve()) if found else None


def test_every_skipped_block_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    """The list of blocks that do not run, with their reasons: printed, and every reason known."""
    skipped = [b for b in BLOCKS if b.marker is not None]
    with capsys.disabled():
        print(f"\n{len(BLOCKS) - len(skipped)} doc blocks run, {len(skipped)} do not:")
        for block in skipped:
            print(f"  {block.id} ({block.language}): not-run: {block.marker}")
    unknown = [f"{b.id}: {b.marker}" for b in skipped if b.marker not in NOT_RUN]
    assert unknown == [], f"unknown not-run reasons (known: {', '.join(NOT_RUN)})"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed files, as a fresh clone has them, with the venv beside them."""
    target = tmp_path_factory.mktemp("docs-run") / "addrop"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # mtimes kept: make sees the install as done
    (target / ".venv").symlink_to(VENV_BIN.parent)
    return target


# `make` never installs into the shared venv from the copy: the install stamp counts as made
PRELUDE = """set -e -o pipefail
make() { command make -o .venv/.installed-stamp "$@"; }
"""


def _env(clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADDROP_", "COLUMNS"))}
    env |= {
        "PATH": f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "ADDROP_CACHE_DIR": str(clone.parent / "cache"),
    }
    glue = _glue_dir()
    if glue is not None:
        env["ADDROP_GLUE_DIR"] = glue
    return env


def _command(block: Block, clone: Path) -> list[str]:
    code = block.code
    glue = _glue_dir()
    for placeholder in GLUE_PLACEHOLDERS:
        code = code.replace(placeholder, glue or placeholder)
    if block.language == "python":
        script = clone.parent / f"block-{block.line}.py"
        script.write_text(code, encoding="utf-8")
        return [str(clone / ".venv" / "bin" / "python"), str(script)]
    if block.language == "console":  # the lines after "$ " are the commands; the rest is output
        code = "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))
    return ["bash", "-c", PRELUDE + code]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_the_block_runs(block: Block, clone: Path) -> None:
    if block.marker is not None:
        pytest.skip(f"not-run: {block.marker} ({NOT_RUN.get(block.marker, 'unknown reason')})")
    if any(p in block.code for p in GLUE_PLACEHOLDERS) and _glue_dir() is None:
        pytest.skip("needs a GLUE folder (ADDROP_GLUE_DIR or ../shared/glue_data): none here")
    done = subprocess.run(
        _command(block, clone),
        cwd=clone,
        env=_env(clone),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, f"{block.id} failed (exit {done.returncode}):\n{tail}"
    assert "Traceback" not in done.stderr, f"{block.id}: a traceback\n{tail}"
    if block.language == "console":  # the report rows shown are the ones the commands print
        shown = _table_rows(block.code)
        assert shown == _table_rows(done.stdout)[: len(shown)], (
            f"{block.id}: the report shown differs from what its commands print; paste the "
            f"real one:\n{tail}"
        )


def _table_rows(text: str) -> list[str]:
    """The rows of the report tables in ``text`` that hold numbers (mean ± std)."""
    return [line.rstrip() for line in text.splitlines() if line.startswith("│ ") and "±" in line]
