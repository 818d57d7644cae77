"""Two real agents on the sample video, each on its own leaf node, and the hub.

A fleet query added at the hub is applied by both agents (marked as a fleet query in their API),
their alerts reach the hub once each with evidence readable from the hub's mirrors, heartbeats
arrive, and a false alarm marked at the hub reaches the site that raised it, where it feeds the
query's negative exemplars as a local mark does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.fleet.hub import AlertIndex, FleetHub
from agent.fleet.queries import FleetQuery
from agent.fleet.subjects import health_subject
from agent.service import Agent
from tests.agent.alerts.helpers import wait_until
from tests.fixtures.nats_fleet import FleetNet

TOKEN = "fleet-agent-token-0123456789"


def _agent(net: FleetNet, site: str, folder: Path, clip: Path, video: Path) -> Agent:
    leaf = net.leaves[site]
    config = parse_config(
        f"""
site: {site}
state_dir: {folder}/state
cameras:
  - {{id: door, uri: "{video}", loop: true, analysis_fps: 5}}
detector: {{type: ssd-mobilenet, batch_size: 4}}
matching:
  embedder: {{model_dir: "{clip}", engine: {{type: onnxruntime, providers: [cpu]}}}}
  window_s: 1
  embed_interval_s: 0.5
alerts: {{cooldown_s: 3}}
api: {{enabled: true, port: 0, token: {TOKEN}}}
fleet:
  url: {leaf.url}
  user: agent
  password: agent-secret
  heartbeat_s: 0.5
"""
    )
    return Agent(config, duration_s=150)


def _get(agent: Agent, path: str) -> Any:
    assert agent.api is not None
    request = urllib.request.Request(agent.api.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def _has_query(agent: Agent, key: str) -> bool:
    return agent.registry.fleet_query(key) is not None


def _answers(agent: Agent) -> bool:
    try:
        _get(agent, "/health")
    except (OSError, AssertionError):
        return False
    return True


def _heartbeats(net: FleetNet, seconds: float) -> set[str]:
    import nats

    async def listen() -> set[str]:
        client = await nats.connect(**net.hub_connection().connect_options())  # type: ignore[arg-type]
        sites: set[str] = set()
        # one subscription per site: the hub forwards a leaf's messages only for subjects in that
        # site's permissions, so a wildcard over every site would hear none of them
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def heard(message: Any) -> None:
            await queue.put(message)

        for site in net.sites:
            await client.subscribe(health_subject(site), cb=heard)
        try:
            end = asyncio.get_running_loop().time() + seconds
            while len(sites) < 2 and asyncio.get_running_loop().time() < end:
                try:
                    message = await asyncio.wait_for(queue.get(), 0.5)
                except asyncio.TimeoutError:
                    continue
                body = json.loads(message.data)
                assert body["health"]["cameras"], body
                sites.add(body["site"])
        finally:
            await client.close()
        return sites

    return asyncio.run(listen())


@pytest.mark.slow
def test_two_agents_one_hub(
    fleet_net: FleetNet, fleet_hub: FleetHub, tmp_path: Path, clip_fp32: Path, sample_video: Path
) -> None:
    agents = {
        site: _agent(fleet_net, site, tmp_path / site, clip_fp32, sample_video) for site in fleet_net.sites
    }
    runners = [threading.Thread(target=agent.run, daemon=True) for agent in agents.values()]
    for runner in runners:
        runner.start()
    index = AlertIndex()
    fleet_hub.follow_alerts(index)
    try:
        key = fleet_hub.put_query(FleetQuery(text="a person", threshold=0.01, severity="critical"))
        for agent in agents.values():
            wait_until(functools.partial(_has_query, agent, key), 30, "the fleet query at a site")
            wait_until(functools.partial(_answers, agent), 60, "the API")
            listed = [q for q in _get(agent, "/queries") if q.get("fleet") == key]
            assert listed, "the API marks the fleet query"
        assert _heartbeats(fleet_net, 20) == {"site-a", "site-b"}
        wait_until(
            lambda: {a["site"] for a in index.list()} == {"site-a", "site-b"}, 120, "alerts of both sites"
        )
        assert all(count == 1 for count in index.events.values())
        alert = index.list(site="site-a")[0]
        evidence = alert["fleet_evidence"]
        # the hub reads its mirror of the site's store: under CI's load (two agents encoding clips
        # on two cores) a 20 s wait timed out once
        wait_until(lambda: _reads(fleet_hub, evidence["bucket"], evidence["crop"]), 60, "the crop at the hub")
        assert fleet_hub.evidence(evidence["bucket"], evidence["crop"])[:2] == b"\xff\xd8"
        # a false alarm marked at the hub reaches site-a's review store and its exemplars
        site_a = agents["site-a"]
        fleet_hub.review("site-a", alert["alert_id"], "false_alarm", note="a shadow", by="ops")
        reviews = site_a.console.reviews
        assert reviews is not None
        wait_until(lambda: (reviews.get(alert["alert_id"]) or {}).get("verdict") == "false", 20, "the mark")
        review = reviews.get(alert["alert_id"])
        assert review is not None and review["history"][-1]["by"] == "fleet:ops"
        wait_until(lambda: site_a.console.exemplars.count(alert["query_id"]) > 0, 20, "negative exemplars")
    finally:
        for agent in agents.values():
            agent.stop()
        for runner in runners:
            runner.join(20)


def _reads(hub: FleetHub, bucket: str, name: str) -> bool:
    try:
        hub.evidence(bucket, name)
    except Exception:
        return False
    return True
