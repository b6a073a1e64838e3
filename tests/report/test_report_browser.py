"""The HTML report in a real browser: headless Chromium opens the self-contained page with no
network, reports no console error, decodes every plot, and the page fits a laptop screen.

A screenshot of the page (the first screen, and the whole page) is saved for people to look at,
under results/ci-artifacts/report-browser/ (CI keeps it as an artefact; git ignores results/).
Without Chromium (Debian's ``chromium`` package; .ci/run installs it) the test is skipped and
says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser import Browser, find_chromium
from conftest import ARTIFACTS

from addrop_cli.report import write_markdown_report

pytestmark = pytest.mark.browser

GLUE_SMALL = Path(__file__).resolve().parents[1] / "fixtures" / "store" / "glue-small"
CHROMIUM = find_chromium()
LAPTOP = (1366, 768)

DECODE_IMAGES = """Promise.all([...document.images].map(img => img.decode().then(
  () => ({src: img.src.slice(0, 22), complete: img.complete, width: img.naturalWidth}),
  error => ({src: img.src.slice(0, 22), error: String(error)}))))"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """REPORT.md with its HTML page beside it, from the committed fixture store; the plots are
    then deleted, so the page can only show them if they are inlined."""
    exp = shutil.copytree(GLUE_SMALL, tmp_path_factory.mktemp("browser") / "glue-small")
    md = write_markdown_report(exp / "REPORT.md", [exp])
    for figure in [*exp.glob("*.png"), *exp.glob("*.svg")]:
        figure.unlink()
    return md.with_suffix(".html")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_html_report_opens_in_chromium_with_every_image_decoded(page: Path) -> None:
    out = ARTIFACTS / "report-browser"
    with Browser(CHROMIUM) as browser:
        browser.open(page, width=LAPTOP[0], height=LAPTOP[1])
        images = browser.evaluate(DECODE_IMAGES)
        widths = browser.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        tables = browser.evaluate("document.querySelectorAll('table').length")
        title = browser.evaluate("document.title")
        errors = browser.errors()
        shot = browser.screenshot(out / "report.png")
        full = browser.screenshot(out / "report-full.png", full_page=True)
    assert errors == []
    # bars + one curves figure per task, every one inlined, loaded and decoded
    assert len(images) == 4
    for image in images:
        assert image.get("error") is None, image
        assert image["src"] == "data:image/png;base64,"
        assert image["complete"] and image["width"] > 0
    assert tables == 5 and title == "Report: glue-small"  # dev, statistics, runs, cost, not counted
    assert widths[0] <= widths[1]  # no sideways scrolling of the page on a laptop screen
    for png in (shot, full):
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_a_broken_image_is_caught(page: Path, tmp_path: Path) -> None:
    """The checks above can fail: an image that does not decode and a console error are seen."""
    broken = tmp_path / "broken.html"
    html = page.read_text(encoding="utf-8")
    start = html.index("data:image/png;base64,") + len("data:image/png;base64,")
    html = html[:start] + "AAAA" + html[start + 4000 :]
    html = html.replace("</body>", "<script>console.error('boom')</script></body>")
    broken.write_text(html, encoding="utf-8")
    with Browser(CHROMIUM) as browser:
        browser.open(broken)
        images = browser.evaluate(DECODE_IMAGES)
        errors = browser.errors()
    assert sum(bool(image.get("error")) for image in images) == 1
    assert any("boom" in e for e in errors)
