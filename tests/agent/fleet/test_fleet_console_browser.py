"""The fleet console in headless Chromium (Debian's ``chromium``, driven by Playwright): a hub, two
leaf nodes and two real agents on the sample video, ``watchword fleet serve``'s app in process.

The walk of issue 18: sign in, see both sites, add a fleet query and see it applied at both, see
an alert from each site with its evidence, mark a false alarm and see it reach the site.
"""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.config import ApiConfig
from agent.api.server import ApiServer
from agent.fleet.console_app import create_fleet_app
from agent.fleet.console_state import FleetConsoleState
from agent.fleet.hub_config import FleetFileConfig
from agent.service import Agent
from tests.agent.alerts.helpers import wait_until
from tests.agent.console.browser import CHROMIUM, CHROMIUM_ARGS, wait_in_page
from tests.agent.fleet.test_fleet_agents import TOKEN as AGENT_TOKEN
from tests.agent.fleet.test_fleet_agents import _agent, _has_query
from tests.fixtures.nats_fleet import FleetNet

TOKEN = "fleet-console-token-0123456789"
pytestmark = pytest.mark.slow


@pytest.fixture
def fleet_console(fleet_net: FleetNet) -> Iterator[tuple[str, FleetConsoleState]]:
    config = FleetFileConfig.model_validate(
        {
            "hub": fleet_net.hub_connection().model_dump(),
            "sites": [{"id": "site-a", "name": "Site A"}, {"id": "site-b"}],
        }
    )
    config = config.model_copy(update={"hub": fleet_net.hub_connection()})
    state = FleetConsoleState(config)
    state.start()
    server = ApiServer(create_fleet_app(state, TOKEN), "127.0.0.1", 0, ApiConfig(enabled=True, port=0))
    server.start()
    yield server.url, state
    server.stop(timeout_s=2.0)
    state.close()


@pytest.fixture
def agents(
    fleet_net: FleetNet, tmp_path: Path, clip_fp32: Path, sample_video: Path
) -> Iterator[dict[str, Agent]]:
    running = {
        site: _agent(fleet_net, site, tmp_path / site, clip_fp32, sample_video) for site in fleet_net.sites
    }
    threads = [threading.Thread(target=agent.run, daemon=True) for agent in running.values()]
    for thread in threads:
        thread.start()
    yield running
    for agent in running.values():
        agent.stop()
    for thread in threads:
        thread.join(20)


def test_fleet_console_walk(fleet_console: tuple[str, FleetConsoleState], agents: dict[str, Agent]) -> None:
    if not CHROMIUM.is_file() or shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
    url, _ = fleet_console
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(60_000)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        try:
            page.goto(url + "/")
            key = _walk(page, agents)
            _site_console_shows_it_read_only(context.new_page(), agents["site-b"], key)
        finally:
            context.close()
            browser.close()
    assert not [e for e in errors if "Content-Security-Policy" in e], errors


def _site_console_shows_it_read_only(page: Any, agent: Agent, key: str) -> None:
    """At the site, the agent's own console lists the fleet query without Edit or Delete."""
    assert agent.api is not None
    page.goto(agent.api.url + "/")
    page.fill("#signin-token", AGENT_TOKEN)
    page.click("#signin-form button")
    page.wait_for_selector("#nav", state="visible")
    page.goto(agent.api.url + "/#/queries")
    query = agent.registry.fleet_query(key)
    assert query is not None
    row = f"#query-rows tr[data-query='{query.id}']"
    page.wait_for_selector(f"{row} td.fleet:has-text('read-only')")
    assert page.locator(f"{row} button").count() == 0
    assert page.is_disabled(f"{row} input[type=checkbox]")


def _walk(page: Any, agents: dict[str, Agent]) -> str:
    page.wait_for_selector("#signin-form", state="visible")
    page.fill("#signin-token", "wrong-token-wrong-token")
    page.click("#signin-form button")
    page.wait_for_selector("#signin-error:has-text('Wrong token')")
    page.fill("#signin-token", TOKEN)
    page.click("#signin-form button")
    page.wait_for_selector("#nav", state="visible")
    # both sites, online by their heartbeats
    wait_in_page(page, "document.querySelectorAll('#site-rows td.ok').length === 2", timeout_s=90)
    # a fleet query, applied at both sites (their heartbeats list it)
    page.fill("#q-text", "a person")
    page.fill("#q-threshold", "0.01")
    page.select_option("#q-severity", "critical")
    # tried at site-a before saving: its agent answers from its recent tracks
    page.select_option("#try-site", "site-a")
    page.click("#try-button")
    summary = wait_in_page(
        page,
        "(() => { const t = document.querySelector('#try-summary').textContent; "
        "return t && t !== 'trying…' ? t : null; })()",
        timeout_s=60,
    )
    assert "would alert" in summary, summary
    page.click("#query-form button[type=submit]")
    page.wait_for_selector("#query-rows tr[data-key]")
    key = page.get_attribute("#query-rows tr[data-key]", "data-key")
    assert key
    for agent in agents.values():
        wait_until(functools.partial(_has_query, agent, key), 30, "the query at a site")
    wait_in_page(
        page,
        "k => [...document.querySelectorAll('#site-rows td.applied')]"
        ".filter(td => td.textContent.includes(k)).length === 2",
        key,
        timeout_s=30,
    )
    # an alert from each site, with evidence from the hub's object-store mirror
    for site in ("site-a", "site-b"):
        page.wait_for_selector(f"#alert-rows tr[data-site='{site}']", timeout=120_000)
    page.click("#alert-rows tr[data-site='site-a']")
    alert_id = page.get_attribute("#alert-rows tr[data-site='site-a']", "data-id")
    wait_in_page(page, "document.querySelector('#detail-crop').naturalWidth > 0", timeout_s=30)
    # a false alarm, marked at the hub, reaches site-a's review store
    page.click("#detail [data-action='false_alarm']")
    reviews = agents["site-a"].console.reviews
    assert reviews is not None and alert_id
    wait_until(lambda: (reviews.get(alert_id) or {}).get("verdict") == "false", 30, "the mark at site-a")
    wait_in_page(
        page,
        "id => document.querySelector(`#alert-rows tr[data-id='${id}'] td.verdict`)?.textContent === 'false'",
        alert_id,
    )
    return key
