"""The headless browser of the console tests: Debian's ``chromium`` driven by Playwright, and the
checks every page must pass (no horizontal scrolling at phone width, axe-core in the page)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.agent.console.agent_fixture import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
# axe-core, pinned in package-lock.json and installed by `make setup` (npm ci)
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@contextmanager
def chromium(viewport: dict[str, int] = DESKTOP, errors: list[str] | None = None) -> Iterator[Any]:
    """A browser context (one page opened on it: ``context.pages[0]``)."""
    if not CHROMIUM.is_file() or shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(30_000)
        tab = context.new_page()
        if errors is not None:
            tab.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            tab.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        try:
            yield context
        finally:
            context.close()
            browser.close()


def wait_in_page(page: Any, expression: str, arg: Any = None, timeout_s: float = 30.0) -> Any:
    """Evaluate ``expression`` in the page until it is truthy. Playwright's ``wait_for_function``
    compiles its predicate from a string inside the page, which the console's Content-Security-Policy
    (no ``'unsafe-eval'``) forbids, as it should; ``evaluate`` runs through the DevTools protocol."""
    return wait_for(lambda: page.evaluate(expression, arg), timeout_s, expression, interval_s=0.1)


def sign_in(page: Any, url: str, token: str) -> None:
    """Sign in, unless this browser's session still holds."""
    page.goto(url + "/")
    page.wait_for_selector("#signin-form:visible, #nav:visible")
    if page.is_visible("#nav"):
        return
    page.fill("#signin-token", token)
    page.click("#signin-form button")
    page.wait_for_selector("#nav", state="visible")


def screenshot(page: Any, name: str) -> None:
    """Into docs/ for the README when ``WATCHWORD_SCREENSHOTS=1``."""
    if os.environ.get("WATCHWORD_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / name))


def horizontal_overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scrolling)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def overflowing(page: Any) -> list[str]:
    """The innermost elements that reach past the window's right edge (for a failing check's message)."""
    return list(
        page.evaluate(
            """() => Array.from(document.querySelectorAll('body *')).filter((e) =>
                 e.getBoundingClientRect().right > window.innerWidth + 1 && e.offsetParent !== null &&
                 !Array.from(e.children).some((c) => c.getBoundingClientRect().right > window.innerWidth + 1))
               .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)"""
        )
    )


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's WCAG 2 A/AA violations of the page as shown, of the given impacts, one line each."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `make setup` (npm ci installs axe-core)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # through the DevTools protocol, as the console's CSP forbids inline scripts (as it should)
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;true")
    result = page.evaluate(
        """async () => { const r = await axe.run(document, { runOnly: { type: 'tag',
             values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
           return r.violations.map((v) => ({ id: v.id, impact: v.impact,
             nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) })); }"""
    )
    return [f"{v['id']} ({v['impact']}): {', '.join(v['nodes'])}" for v in result if v["impact"] in impacts]
