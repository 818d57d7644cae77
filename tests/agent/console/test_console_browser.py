"""The operator console in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against a running agent on the sample video with the tiny CLIP export.

The tests run in order on one agent and one browser page, as an operator would: sign in, watch a
tile, see an alert arrive, open its evidence, mark it, add a query and a camera, sign out.
Screenshots for the README are written to ``docs/`` when ``WATCHWORD_SCREENSHOTS=1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.console.agent_fixture import TOKEN, RunningAgent, running_agent, wait_for
from tests.agent.console.browser import (
    PHONE,
    axe_violations,
    chromium,
    horizontal_overflow,
    overflowing,
    screenshot,
    wait_in_page,
)

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
    with chromium(errors=console_errors) as context:
        tab = context.pages[0]
        tab.goto(live.url + "/")
        yield tab


_screenshot = screenshot


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
    page.wait_for_selector("#alerts-empty:has-text('No alerts yet')")
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
    # the nav and the title count what is unreviewed; the live region says it
    page.wait_for_selector("#unreviewed:not([hidden])")
    assert int(page.inner_text("#unreviewed")) >= 1
    assert page.title().startswith("(")
    page.wait_for_selector("#announcer:has-text('New critical alert: a person on sample')", state="attached")
    wait_for(lambda: (live.root / "state" / "evidence" / alert_id / "crop.jpg").exists(), 20, "evidence")
    # by id: `row` is a live locator, and a newer alert may take the first row meanwhile
    page.locator(f'#alert-rows tr[data-alert="{alert_id}"] a').click()
    page.wait_for_selector("#page-alert", state="visible")
    wait_in_page(page, "document.getElementById('alert-crop')?.naturalWidth > 0")
    wait_in_page(page, "document.getElementById('alert-frame')?.naturalWidth > 0")
    wait_in_page(page, "Number(document.getElementById('alert-chart').dataset.points || 0) > 0")
    # the chart drew its line: blue pixels on the canvas
    blue = page.evaluate(
        """() => { const c = document.getElementById('alert-chart');
           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
           for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 180 && d[i] < 120) n++;
           return n; }"""
    )
    assert blue >= 10  # a blank chart has none (grid and labels are grey)
    # ... with the effective threshold, the moment it fired, and a reason in one line
    assert float(page.get_attribute("#alert-chart", "data-threshold") or "nan") == pytest.approx(0.01)
    assert page.get_attribute("#alert-chart", "data-fired")
    reason = page.inner_text("#alert-reason")
    assert reason.startswith("CLIP score") and "over threshold 0.01" in reason, reason
    # the frame zooms in place
    page.click("#alert-frame")
    assert "zoomed" in (page.get_attribute("#alert-frame-box", "class") or "")
    page.click("#alert-frame")
    assert "jsonl" in page.inner_text("#alert-deliveries")
    # the clip of the seconds around it, encoded off the video thread, plays in the page
    clip = live.root / "state" / "evidence" / alert_id / "clip.webm"
    wait_for(clip.exists, 60, "the alert's clip")
    page.goto(f"{live.url}/#/alerts")
    page.goto(f"{live.url}/#/alerts/{alert_id}")
    page.wait_for_selector("#alert-clip video")
    wait_in_page(page, "document.querySelector('#alert-clip video')?.readyState >= 1", timeout_s=30)
    assert page.evaluate("document.querySelector('#alert-clip video').duration") > 1.0
    _screenshot(page, "console-alert.png")
    page.click("#alert-actions button[data-action=false_alarm]")
    page.wait_for_selector("#alert-review[data-verdict=false]")
    assert live.agent.console.reviews is not None
    review = live.agent.console.reviews.get(alert_id)
    assert review is not None and review["verdict"] == "false"
    assert live.agent.console.exemplars.count(query.id) > 0
    # a note, a reopen, and the history of both on the page
    page.fill("#alert-note", "the cleaner, every night at 3")
    page.click("#alert-note-save")
    page.wait_for_selector("#alert-history li:has-text('the cleaner')")
    page.click("#alert-actions button[data-action=reopen]")
    page.wait_for_selector("#alert-review[data-state=new]")
    review = live.agent.console.reviews.get(alert_id)
    assert (
        review is not None and review["note"] == "the cleaner, every night at 3" and review["state"] == "new"
    )
    assert page.locator("#alert-history li").count() == 3


def test_the_alert_page_acts_only_on_the_alert_it_shows(page: Any, live: RunningAgent) -> None:
    """Found: after alert A, ``#/alerts/no-such-alert`` still showed A, and Resolve resolved A."""
    reviews = live.agent.console.reviews
    assert reviews is not None
    first = page.get_attribute("#page-alert", "data-alert")
    assert first
    before = reviews.get(first)
    page.goto(live.url + "/#/alerts/no-such-alert")
    page.wait_for_selector("#alert-title:has-text('Alert not found')")
    assert page.is_visible("#alert-missing")
    assert page.is_hidden("#alert-body")
    assert page.get_attribute("#page-alert", "data-alert") is None
    assert page.get_attribute("#alert-crop", "src") is None
    # even a click that reaches a hidden button changes nothing
    page.evaluate("document.querySelector('#alert-actions button[data-action=resolve]').click()")
    page.wait_for_timeout(500)
    assert reviews.get(first) == before


def test_the_inbox_groups_repeats_and_triages_from_the_keyboard(page: Any, live: RunningAgent) -> None:
    reviews = live.agent.console.reviews
    assert reviews is not None
    page.goto(live.url + "/#/alerts")
    page.wait_for_selector("#alert-rows tr")
    wait_in_page(page, "document.querySelectorAll('#alert-rows tr').length >= 2", timeout_s=90)
    # one row per (camera, query, person): as many rows as distinct tracks among the alerts shown
    rows, groups, alerts = page.evaluate(
        """() => { const keys = new Set(); for (const a of state.alerts.values())
             keys.add(`${a.camera}/${a.query_id}/${a.track_id}`);
           return [document.querySelectorAll('#alert-rows tr').length, keys.size, state.alerts.size]; }"""
    )
    assert rows == groups
    if alerts > groups:  # a person alerted again: their row says how many times
        assert page.locator("#alert-rows .repeat").count() >= 1
    # thumbnails of each row's crop
    wait_in_page(page, "Array.from(document.querySelectorAll('.row-thumb')).some((i) => i.naturalWidth > 0)")
    _screenshot(page, "console-inbox.png")
    # j moves the cursor, a acknowledges every alert of that row, f marks them a false alarm
    page.locator("#alert-rows tr").first.locator("td").nth(6).click()  # the first row's score
    first = page.locator("#alert-rows tr.cursor").get_attribute("data-group")
    page.keyboard.press("j")
    group = page.locator("#alert-rows tr.cursor").get_attribute("data-group")
    assert group and group != first
    ids = page.evaluate(
        "(key) => inbox.groups.find((g) => g.key === key).alerts.map((a) => a.alert_id)", group
    )
    page.keyboard.press("a")
    wait_for(lambda: all((reviews.get(i) or {}).get("state") == "acknowledged" for i in ids), 20, "ack")
    page.keyboard.press("f")
    wait_for(lambda: all((reviews.get(i) or {}).get("verdict") == "false" for i in ids), 20, "false alarms")
    # ? shows the shortcuts
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.click("#help-close")
    # per row and for a selection
    unreviewed = page.locator("#alert-rows tr.unreviewed")
    if unreviewed.count():
        row_id = unreviewed.first.get_attribute("data-alert")
        unreviewed.first.locator("button[data-row-action=acknowledge]").click()
        wait_for(lambda: (reviews.get(row_id or "") or {}).get("state") == "acknowledged", 20, "row ack")
    page.check("#select-all")
    assert "selected" in page.inner_text("#bulk-count")
    shown = page.evaluate("inbox.groups.flatMap((g) => g.alerts.map((a) => a.alert_id))")
    page.click("#bulk-actions button[data-bulk=resolve]")
    wait_for(
        lambda: all((reviews.get(i) or {}).get("state") == "resolved" for i in shown), 30, "bulk resolve"
    )
    _screenshot(page, "console-inbox.png")


def test_query_added_in_the_ui_is_registered_and_scored(page: Any, live: RunningAgent) -> None:
    page.goto(live.url + "/#/queries")
    page.wait_for_selector("#query-form", state="visible")
    text = "someone carrying a large bag"
    page.fill("#query-form input[name=text]", text)
    # try before you save: the tracks of the last hour it would have matched, with thumbnails
    page.wait_for_selector("#try-results .thumb img", timeout=60_000)
    wait_in_page(page, "document.querySelector('#try-results .thumb img')?.naturalWidth > 0")
    assert page.get_attribute("#try-summary", "data-suggested")
    # a rate the footage cannot tell (one alert in ten hours from minutes of video) is said so
    page.fill("#try-rate", "0.1")
    page.wait_for_selector("#try-summary:has-text('too short')")
    page.fill("#try-rate", "600")
    wait_in_page(page, "!document.getElementById('try-summary').textContent.includes('too short')")
    _screenshot(page, "console-queries.png")
    # "use this threshold" puts the suggestion in the form, and saving stores it (not auto)
    page.click("#use-threshold")
    chosen = float(page.input_value("#query-form input[name=threshold]"))
    assert 0 < chosen < 1
    page.select_option("#query-form select[name=severity]", "info")
    page.click("#query-form button[type=submit]")
    page.wait_for_selector(f"#query-rows tr:has-text('{text}')")
    stored = [q for q in live.agent.registry.list_queries() if q.text == text]
    assert len(stored) == 1 and stored[0].threshold == pytest.approx(chosen) and stored[0].severity == "info"

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
    # the id's pattern is one Chromium compiles (found: it was invalid, so the check was off)
    page.fill("#camera-form input[name=id]", "bad id!")
    assert page.evaluate("document.querySelector('#camera-form input[name=id]').validity.patternMismatch")
    page.fill("#camera-form input[name=id]", "pattern")
    assert not page.evaluate("document.querySelector('#camera-form input[name=id]').validity.patternMismatch")
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


def test_every_page_fits_a_phone_and_passes_axe(page: Any, live: RunningAgent) -> None:
    """At 390 x 844 no page scrolls sideways (found: 5 of 6 did), and axe-core finds no serious or
    critical WCAG A/AA violation on any page, at phone and desktop width."""
    alert_id = next(iter(live.agent.console.reviews.marked()))["alert_id"]  # type: ignore[union-attr]
    for viewport in (PHONE, {"width": 1280, "height": 800}):
        page.set_viewport_size(viewport)
        for path in ("live", "alerts", f"alerts/{alert_id}", "queries", "search", "cameras"):
            page.goto(f"{live.url}/#/{path}")
            shown = "#page-alert" if "/" in path else f"#page-{path}"
            page.wait_for_selector(f"{shown}:not([hidden])", state="attached")
            page.wait_for_timeout(500)  # the page's first render and its images
            assert horizontal_overflow(page) <= 0, (viewport, path, overflowing(page))
            assert axe_violations(page) == [], (viewport, path)
        if viewport == PHONE:
            page.goto(f"{live.url}/#/alerts")
            page.wait_for_selector("#alert-rows tr")
            _screenshot(page, "console-phone.png")


def test_sign_out_locks_the_pages_again(page: Any, live: RunningAgent) -> None:
    page.click("#sign-out")  # found: it waited for a connection while closed tiles kept theirs
    page.wait_for_selector("#signin-form", state="visible", timeout=10_000)
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
    assert [error for error in console_errors if error.startswith("uncaught")] == []
