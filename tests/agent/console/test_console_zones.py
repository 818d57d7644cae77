"""Zones in the console, in a real headless Chromium against a running agent (sample video, SSD,
ByteTrack, the tiny CLIP export): draw two zones on the live image, limit two identical queries to
them through the query form, and see that only the query whose zone holds the people's feet alerts;
try-before-save and Search limited to a zone find only the people seen in it, and say so.

The "sky" zone is a strip along the top of the image (the buildings), where no one's feet are;
"floor" is the ground below the far path, where the people walk.
Both queries are "a person" at threshold 0.01, so every person scores over the threshold for both:
the one difference is the zone. Screenshot ``docs/console-zones.png`` with ``WATCHWORD_SCREENSHOTS=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.console.agent_fixture import TOKEN, RunningAgent, running_agent, wait_for
from tests.agent.console.browser import axe_violations, chromium, screenshot, sign_in, wait_in_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, clip_fp32: Path, sample_video: Path
) -> Iterator[RunningAgent]:
    with running_agent(tmp_path_factory.mktemp("console-zones"), clip_fp32, sample_video) as running:
        yield running


def draw_zone(page: Any, name: str, corners: list[tuple[float, float]]) -> None:
    """Click the corners (fractions of the image) on the tile's overlay, name the zone, save it."""
    overlay = page.locator(".tile[data-camera=sample] svg.zones")
    box = overlay.bounding_box()
    assert box is not None and box["width"] > 50
    for x, y in corners:
        page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
    page.fill(".tile[data-camera=sample] input[name=zone-name]", name)
    page.click(".tile[data-camera=sample] .zone-save")
    page.wait_for_selector(f".tile[data-camera=sample] svg.zones g[data-zone={name}]", state="attached")


def add_query(page: Any, text: str, zone: str) -> None:
    form = "#query-form"
    page.click("#query-reset")
    page.fill(f"{form} input[name=text]", text)
    page.fill(f"{form} input[name=threshold]", "0.01")
    page.fill(f"{form} input[name=zones]", zone)
    page.click(f"{form} button[type=submit]")


def test_a_query_limited_to_a_zone_alerts_only_inside_it(live: RunningAgent) -> None:
    with chromium() as context:
        page = context.pages[0]
        sign_in(page, live.url, TOKEN)
        page.goto(live.url + "/#/live")
        tile = page.locator(".tile[data-camera=sample]")
        tile.wait_for()
        wait_in_page(page, "document.querySelector('.tile[data-camera=sample] img')?.naturalWidth > 0")
        page.click(".tile[data-camera=sample] .zones-button")
        draw_zone(page, "sky", [(0.02, 0.01), (0.98, 0.01), (0.98, 0.07), (0.02, 0.07)])
        draw_zone(page, "floor", [(0.01, 0.3), (0.99, 0.18), (0.99, 0.995), (0.01, 0.995)])
        stored = {z.name: z.points for z in live.agent.console.cameras.get("sample").zones}
        assert set(stored) == {"sky", "floor"}
        assert all(0.0 <= v <= 1.0 for points in stored.values() for point in points for v in point)
        assert max(y for _, y in stored["sky"]) == pytest.approx(0.07, abs=0.01)
        assert page.locator(".zone-list li[data-zone]").count() == 2
        assert not axe_violations(page)
        screenshot(page, "console-zones.png")
        # two identical queries, one per zone, added through the form
        page.goto(live.url + "/#/queries")
        page.wait_for_selector("#page-queries", state="visible")
        add_query(page, "a person near the entrance", "sky")
        page.wait_for_selector("#query-rows tr[data-query] .reading:has-text('only in zone sky')")
        add_query(page, "a person near the entrance", "floor")
        page.wait_for_selector("#query-rows tr[data-query] .reading:has-text('only in zone floor')")
        queries = {q.zones[0]: q for q in live.agent.registry.list_queries() if q.zones}
        assert set(queries) == {"sky", "floor"}

        def alerted(query_id: int) -> int:
            return len(live.agent.alerts.recent(limit=500, query_id=query_id))

        # the person walking on the floor raises the floor query's alert ...
        wait_for(lambda: alerted(queries["floor"].id), 120, "an alert of the query limited to the floor")
        # ... and by then the same scores, outside the sky zone, were never sampled for the sky query
        assert alerted(queries["sky"].id) == 0
        # the query page reads the zone in place of "near the entrance"
        row = page.locator(f"#query-rows tr[data-query='{queries['floor'].id}'] .reading")
        assert "only in zone floor" in row.inner_text()
        assert page.locator(".zone-missing").count() == 0
        # a zone no camera has (a typo) is flagged on the query's row
        add_query(page, "a person near the entrance", "flor")
        page.wait_for_selector(".reading .zone-missing:has-text('no camera has zone flor')")
        # try before you save counts only the people seen in the zone, and says so
        page.click("#query-reset")
        page.fill("#query-form input[name=zones]", "sky")
        page.fill("#query-form input[name=text]", "a person")
        page.wait_for_selector("#try-summary:has-text('Only people seen in zone sky: 0 of 0 tracks')")
        page.fill("#query-form input[name=zones]", "floor")
        page.wait_for_selector("#try-summary:has-text('Only people seen in zone floor')")
        wait_in_page(page, "document.querySelectorAll('#try-results .thumb').length > 0")
        page.fill("#query-form input[name=zones]", "dock")
        page.wait_for_selector("#try-summary:has-text(\"zone 'dock' is on no camera yet\")")
        # and so does Search
        page.goto(live.url + "/#/search")
        page.wait_for_selector("#search-form select[name=zone] option[value=floor]", state="attached")
        page.fill("#search-form input[name=text]", "a person")
        page.select_option("#search-form select[name=zone]", "sky")
        page.click("#search-form button[type=submit]")
        page.wait_for_selector("#search-note:has-text('Only people seen in zone sky.')")
        page.wait_for_selector("#search-results:has-text('No tracks')")
        page.select_option("#search-form select[name=zone]", "floor")
        page.click("#search-form button[type=submit]")
        page.wait_for_selector("#search-note:has-text('Only people seen in zone floor.')")
        page.wait_for_selector("#search-results .thumb")
        assert not axe_violations(page)
