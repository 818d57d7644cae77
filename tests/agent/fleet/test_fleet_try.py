"""Try-before-save from the hub: a site whose answering subscription is not there yet is asked
again until the deadline (not failed on NATS's "no responders"), and a site nobody answers for is
named in a clear error. Real hub and leaf (nats-server) and a real HTTP endpoint for the site's API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.fleet.hub import FleetHub, FleetHubError
from agent.fleet.link import NatsLink
from agent.fleet.trial import TryResponder
from tests.fixtures.nats_fleet import FleetNet


class _TryApi(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        draft = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"text": draft["text"], "tracks": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TryApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_site_with_no_agent_is_named_in_the_error(fleet_hub: FleetHub) -> None:
    with pytest.raises(FleetHubError, match="no agent at site site-a answers"):
        fleet_hub.try_query("site-a", {"text": "a person falling down"}, timeout_s=1.0)


def test_a_site_that_connects_while_the_hub_asks_answers(
    fleet_net: FleetNet, fleet_hub: FleetHub, site_api: str
) -> None:
    link = NatsLink(fleet_net.leaves["site-a"].agent_fleet_config(), "site-a")
    responder = TryResponder(link, "site-a", lambda: (site_api, None))
    responder.start()
    started = threading.Timer(0.5, link.start)  # the site comes up after the hub first asked
    started.start()
    try:
        answer = fleet_hub.try_query("site-a", {"text": "a person falling down"}, timeout_s=15.0)
    finally:
        started.cancel()
        link.close()
    assert answer == {"text": "a person falling down", "tracks": []}
