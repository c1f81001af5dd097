"""report.html in a real browser: headless Chromium renders every table and figure with no network.

Needs the Debian packages chromium and chromium-driver and the selenium package; without them the browser
tests are skipped with the install command. The other tests check the page's text.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.report import build_report
from tests.test_runner import run

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "results"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

try:
    from selenium import webdriver
except ImportError:  # selenium comes with the test extra
    webdriver = None

needs_browser = pytest.mark.skipif(
    webdriver is None or CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs headless Chromium: apt-get install -y chromium chromium-driver, and pip install selenium",
)


@pytest.fixture(scope="module")
def fake_report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    _, run_dir, _ = run(tmp_path, "LinearBackend", "LinearBackend")
    return build_report(run_dir, tmp_path / "out")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        # No network: every host name fails to resolve and every proxied request goes nowhere.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://0.0.0.0:1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def table_count(markdown: str) -> int:
    return sum(1 for line in markdown.splitlines() if re.fullmatch(r"\|(---\|)+", line.strip()))


def test_html_embeds_figures_and_loads_nothing(fake_report):
    page = fake_report["html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert len(fake_report["figures"]) >= 3
    assert page.count('src="data:image/png;base64,') == len(fake_report["figures"])
    # Nothing refers outside the file: no script, no stylesheet link, no remote source.
    assert "<script" not in page
    assert "<link" not in page
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)
    assert page.count("<table>") == table_count(fake_report["markdown"].read_text())


def test_markdown_links_figures_that_exist(fake_report):
    markdown = fake_report["markdown"].read_text()
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", markdown)
    assert len(links) == len(fake_report["figures"])
    for link in links:
        assert (fake_report["markdown"].parent / link).is_file(), link


def render(browser, page: Path, screenshot: Path) -> dict:
    browser.get(page.resolve().as_uri())
    state = browser.execute_script(
        """
        const images = Array.from(document.images);
        return {
            title: document.title,
            tables: document.querySelectorAll('table').length,
            images: images.length,
            loaded: images.filter(image => image.complete && image.naturalWidth > 0).length,
            resources: performance.getEntriesByType('resource').map(entry => entry.name)
                .filter(name => !name.startsWith('data:')),
            height: document.body.scrollHeight,
        };
        """
    )
    screenshot.write_bytes(browser.get_screenshot_as_png())
    return state


def pixel_spread(png: bytes, min_side: int) -> float:
    """Return the standard deviation of a screenshot's RGB values (0 to 1), after checking its size."""
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert min(pixels.shape[:2]) >= min_side, pixels.shape
    return float(np.std(pixels[..., :3]))


def assert_not_blank(png: bytes, min_side: int = 500) -> None:
    # A rendered page or plot has text and lines, so its pixels vary; a blank or error page is nearly uniform.
    assert pixel_spread(png, min_side) > 0.05


@needs_browser
def test_browser_renders_fake_report(browser, fake_report, tmp_path):
    screenshot = tmp_path / "report.png"
    state = render(browser, fake_report["html"], screenshot)
    assert state["title"] == "twinbench results"
    assert state["tables"] == table_count(fake_report["markdown"].read_text())
    assert state["images"] == len(fake_report["figures"])
    assert state["loaded"] == state["images"]
    assert state["resources"] == []
    assert_not_blank(screenshot.read_bytes())


@needs_browser
def test_browser_renders_published_report(browser, tmp_path):
    page = PUBLISHED / "report.html"
    assert page.is_file(), "results/report.html is missing; `python -m bench report` writes it"
    screenshot = tmp_path / "published.png"
    state = render(browser, page, screenshot)
    figures = sorted((PUBLISHED / "figures").glob("*.png"))
    assert state["tables"] == table_count((PUBLISHED / "README.md").read_text())
    assert state["images"] == len(figures) >= 4
    assert state["loaded"] == state["images"]
    assert state["resources"] == []
    assert state["height"] > 5000  # dozens of tables and four figures, not an error page
    assert_not_blank(screenshot.read_bytes())
    # Each figure is drawn on screen, not only loaded: its own screenshot is not blank either.
    for image in browser.find_elements("tag name", "img"):
        browser.execute_script("arguments[0].scrollIntoView();", image)
        assert_not_blank(image.screenshot_as_png, min_side=200)
