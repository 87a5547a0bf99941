"""Browser fixtures: Debian's chromium driven by Playwright, a console that records errors,
and screenshots saved under test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/system-packages.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Console:
    """Every console error and uncaught exception of a page."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Console]]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    p = context.new_page()
    p.set_default_timeout(20_000)
    console = Console()
    console.attach(p)
    yield p, console
    context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def draw_every_plot(page: Any, params: int) -> None:
    """Brings each plot of a study page into view, as a reader scrolling down would (plots
    below the fold are drawn only then), and waits until it is drawn."""
    page.wait_for_function(f"document.querySelectorAll('#param-plots .plot').length >= {params}")
    for plot in page.locator("[id^=plot-], #param-plots .plot").all():
        plot.scroll_into_view_if_needed()
        plot.locator(".main-svg, .empty-plot").first.wait_for()
