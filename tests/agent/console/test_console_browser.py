"""The operator console in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against a running agent on the sample video with the tiny CLIP export.

The tests run in order on one agent and one browser page, as an operator would: sign in, watch a
tile, see an alert arrive, open its evidence, mark it, add a query and a camera, sign out.
Screenshots for the README are written to ``docs/`` when ``WATCHWORD_SCREENSHOTS=1``.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.console.agent_fixture import TOKEN, RunningAgent, running_agent, wait_for

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
DOCS = Path(__file__).resolve().parents[3] / "docs"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, clip_fp32: Path, sample_video: Path
) -> Iterator[RunningAgent]:
    with running_agent(tmp_path_factory.mktemp("console-browser"), clip_fp32, sample_video) as running:
        yield running


@pytest.fixture(scope="module")
def console_errors() -> list[str]:
    """What the browser reported as errors on the console's pages (a blocked script, style or image
    shows here as a Content-Security-Policy violation)."""
    return []


@pytest.fixture(scope="module")
def page(live: RunningAgent, console_errors: list[str]) -> Iterator[Any]:
    if not CHROMIUM.is_file() or shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(30_000)
        tab = context.new_page()
        tab.on(
            "console",
            lambda message: console_errors.append(message.text) if message.type == "error" else None,
        )
        tab.goto(live.url + "/")
        yield tab
        context.close()
        browser.close()


def wait_in_page(page: Any, expression: str, arg: Any = None, timeout_s: float = 30.0) -> Any:
    """Evaluate ``expression`` in the page until it is truthy. Playwright's ``wait_for_function``
    compiles its predicate from a string inside the page, which the console's Content-Security-Policy
    (no ``'unsafe-eval'``) forbids, as it should; ``evaluate`` runs through the DevTools protocol."""
    return wait_for(lambda: page.evaluate(expression, arg), timeout_s, expression, interval_s=0.1)


def _screenshot(page: Any, name: str) -> None:
    if os.environ.get("WATCHWORD_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / name))


def test_sign_in(page: Any, live: RunningAgent) -> None:
    page.wait_for_selector("#signin-form", state="visible")
    assert page.is_hidden("#nav")
    page.fill("#signin-token", "not-the-token-at-all")
    page.click("#signin-form button")
    page.wait_for_selector("#signin-error:has-text('Wrong token')")
    page.fill("#signin-token", TOKEN)
    page.click("#signin-form button")
    page.wait_for_selector("#nav", state="visible")
    assert TOKEN not in page.url
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["watchword_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["value"] != TOKEN
    # the session cookie is not readable from scripts
    assert "watchword_session" not in page.evaluate("document.cookie")


# A fingerprint of what a tile's <img> shows now (the MJPEG stream replaces its picture in place).
TILE_PIXELS = """() => { const img = document.querySelector('.tile img');
  if (!img || img.naturalWidth === 0) return null;
  const c = document.createElement('canvas'); c.width = 96; c.height = 72;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0, 96, 72);
  const d = g.getImageData(0, 0, 96, 72).data; let h = 0;
  for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) % 1000000007;
  return h; }"""


def test_camera_tile_image_changes(page: Any, live: RunningAgent) -> None:
    page.goto(live.url + "/#/live")
    tile = page.locator(".tile[data-camera=sample]")
    tile.wait_for()
    assert "live.mjpg" in (tile.locator("img").get_attribute("src") or "")
    wait_in_page(page, f"({TILE_PIXELS})() !== null")
    first = page.evaluate(TILE_PIXELS)
    wait_in_page(
        page, f"(first) => {{ const now = ({TILE_PIXELS})(); return now !== null && now !== first; }}", first
    )
    page.wait_for_selector(".tile .state.state-running")
    assert "fps" in tile.locator(".fps").inner_text()


def test_alert_appears_without_reload_and_its_evidence_opens(page: Any, live: RunningAgent) -> None:
    page.goto(live.url + "/#/alerts")
    page.wait_for_selector("#page-alerts", state="visible")
    assert page.locator("#alert-rows tr").count() == 0
    page.evaluate("window.__marker = 'same page'")
    # a query that every person matches: the running agent raises an alert, pushed over SSE
    query = live.agent.registry.add("a person", threshold=0.01, severity="critical")
    row = page.locator("#alert-rows tr").first
    row.wait_for(timeout=90_000)
    assert page.evaluate("window.__marker") == "same page", "the page was not reloaded"
    assert "a person" in row.inner_text()
    alert_id = row.get_attribute("data-alert")
    assert alert_id
    wait_for(lambda: (live.root / "state" / "evidence" / alert_id / "crop.jpg").exists(), 20, "evidence")
    # by id: `row` is a live locator, and a newer alert may take the first row meanwhile
    page.locator(f'#alert-rows tr[data-alert="{alert_id}"] a').click()
    page.wait_for_selector("#page-alert", state="visible")
    wait_in_page(page, "document.getElementById('alert-crop').naturalWidth > 0")
    wait_in_page(page, "document.getElementById('alert-frame').naturalWidth > 0")
    wait_in_page(page, "Number(document.getElementById('alert-chart').dataset.points || 0) > 0")
    # the chart drew its line: blue pixels on the canvas
    blue = page.evaluate(
        """() => { const c = document.getElementById('alert-chart');
           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
           for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 180 && d[i] < 120) n++;
           return n; }"""
    )
    assert blue >= 10  # a blank chart has none (grid and labels are grey)
    assert "jsonl" in page.inner_text("#alert-deliveries")
    _screenshot(page, "console-alert.png")
    page.click(".actions button[data-action=false_alarm]")
    page.wait_for_selector("#alert-review[data-verdict=false]")
    assert live.agent.console.reviews is not None
    review = live.agent.console.reviews.get(alert_id)
    assert review is not None and review["verdict"] == "false"
    assert live.agent.console.exemplars.count(query.id) > 0


def test_query_added_in_the_ui_is_registered_and_scored(page: Any, live: RunningAgent) -> None:
    page.goto(live.url + "/#/queries")
    page.wait_for_selector("#query-form", state="visible")
    text = "someone carrying a large bag"
    page.fill("#query-form input[name=text]", text)
    # try before you save: the tracks of the last hour it would have matched, with thumbnails
    page.wait_for_selector("#try-results .thumb img", timeout=60_000)
    wait_in_page(page, "document.querySelector('#try-results .thumb img').naturalWidth > 0")
    assert page.get_attribute("#try-summary", "data-suggested")
    _screenshot(page, "console-queries.png")
    page.fill("#query-form input[name=threshold]", "0.3")
    page.select_option("#query-form select[name=severity]", "info")
    page.click("#query-form button[type=submit]")
    page.wait_for_selector(f"#query-rows tr:has-text('{text}')")
    stored = [q for q in live.agent.registry.list_queries() if q.text == text]
    assert len(stored) == 1 and stored[0].threshold == pytest.approx(0.3) and stored[0].severity == "info"

    def scored() -> bool:
        matcher, core = live.agent.matcher, live.agent.decisions
        assert matcher is not None and core is not None
        ids = matcher.bank.matrix.ids
        if stored[0].id not in ids:
            return False
        column = ids.index(stored[0].id)
        return any(
            s.scores is not None and column < s.scores.size and not math.isnan(float(s.scores.pooled[column]))
            for s in list(core.book.tracks.values())
        )

    wait_for(scored, 30, "a score for the query added in the browser")
    # the live tiles now label each track with its best query and score
    page.goto(live.url + "/#/live")
    wait_in_page(page, f"({TILE_PIXELS})() !== null")
    page.wait_for_timeout(1000)
    _screenshot(page, "console-live.png")


def test_camera_added_in_the_ui_reaches_running(page: Any, live: RunningAgent) -> None:
    page.goto(live.url + "/#/cameras")
    page.wait_for_selector("#camera-form", state="visible")
    page.fill("#camera-form input[name=id]", "pattern")
    page.fill("#camera-form input[name=uri]", "test://?pattern=ball&fps=5")
    page.click("#camera-test")
    page.wait_for_selector("#camera-snapshot:not([hidden])", timeout=30_000)
    page.click("#camera-form button[type=submit]")
    page.wait_for_selector("#camera-rows tr[data-camera=pattern]")
    wait_for(
        lambda: live.health()["cameras"].get("pattern", {}).get("state") == "running", 20, "pattern running"
    )
    page.wait_for_selector("#camera-rows tr[data-camera=pattern] .state:has-text('running')", timeout=20_000)
    assert live.health()["cameras"]["sample"]["state"] == "running"


def test_sign_out_locks_the_pages_again(page: Any, live: RunningAgent) -> None:
    page.click("#sign-out")
    page.wait_for_selector("#signin-form", state="visible")
    assert "watchword_session" not in {c["name"] for c in page.context.cookies()}
    status = page.evaluate("fetch('/queries', {credentials: 'same-origin'}).then(r => r.status)")
    assert status == 401
    page.goto(live.url + "/#/alerts")
    page.wait_for_selector("#signin-form", state="visible")
    assert page.is_hidden("#page-alerts")


def test_no_page_broke_the_content_security_policy(
    page: Any, live: RunningAgent, console_errors: list[str]
) -> None:
    response = page.reload()
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    violations = [error for error in console_errors if "Content Security Policy" in error]
    assert violations == []
