"""The fleet on this machine: real nats-server hub and leaf nodes, the real fleet code, one table.

Rows (targets from issue 18 in brackets):

- query propagation: ``FleetHub.put_query`` (what ``watchword fleet query add`` does) until the
  query is in the registry of every one of 10 sites, p50/p95 over 20 queries [p95 <= 1 s]. The
  matcher re-reads the registry within ``matching.refresh_s`` (0.25 s) after that;
- alert latency: an event enqueued in a site's outbox until the hub's alert index (what the fleet
  console lists) has it, p50/p95 [p95 <= 1 s];
- uplink cut: the hub stopped for ``--outage-s`` (60) while a site raises 5 alerts/s, then started:
  events lost and duplicated at the hub [0 and 0], and seconds from the restart until the hub has
  them all;
- SIGKILL: an agent process delivering a 400-event backlog is killed mid-delivery and started
  again on the same outbox: events lost and duplicated at the hub [0 and 0];
- hub ingest: ``--ingest-sites`` (100) leaf nodes, each with the real fleet sink's batch path
  (``fleet.publish_batch`` events in flight, as the delivery thread hands them; the simulated
  sites spread over ``--publisher-processes`` (4) processes), publishing ``--ingest-events`` (100)
  alerts each at once: events/s published, stored at the hub and listed by its index, and the
  hub's resident memory [>= 2,000 events/s]. On 2 shared cores the publishers bound this row;
- hub catch-up: the hub stopped while every site holds ``--backlog-events`` (100) more, then
  started: the rate the hub stores them at (from its last poll before the first one arrived to
  the last one: a lower bound), and the rate its index is rebuilt from the stream.

Run: ``PYTHONPATH=. .venv/bin/python bench/fleet.py`` (``--quick`` shortens the outage to 10 s and
the ingest to 20 sites, for a look). Every server runs on this machine's loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agent.alerts.delivery import DeliveryWorker
from agent.alerts.outbox import Outbox
from agent.fleet.hub import AlertIndex, FleetHub
from agent.fleet.link import NatsLink
from agent.fleet.provision import provision_site
from agent.fleet.queries import FleetQuery, FleetQuerySync
from agent.fleet.runtime import SINK_RETRY
from agent.fleet.sink import FleetSink
from agent.queries.registry import QueryRegistry
from tests.agent.alerts.helpers import wait_until
from tests.fixtures.nats_fleet import FleetNet, Leaf


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _payload(site: str, alert_id: str, seq: int = 1, camera: str = "cam1") -> dict[str, Any]:
    now = time.time()
    return {
        "schema": 1,
        "event_id": f"{alert_id}/{seq}",
        "alert_id": alert_id,
        "seq": seq,
        "event": "opened",
        "site": site,
        "camera": camera,
        "track_id": 1,
        "query_id": 1,
        "query": "a person falling down",
        "severity": "warning",
        "started_at": now,
        "enqueued_at": now,
        "evidence": None,
    }


class SiteAgent:
    """The fleet part of one agent: its link, the real sink behind a real outbox, fleet queries."""

    def __init__(self, leaf: Leaf, folder: Path, *, queries: bool = False) -> None:
        self.site = leaf.site
        self.link = NatsLink(leaf.agent_fleet_config(), leaf.site)
        self.link.on_connect.append(functools.partial(_provision, self.link, leaf.site))
        config = leaf.agent_fleet_config()
        self.sink = FleetSink(
            "fleet", self.link, leaf.site, evidence_dir=None, batch_size=config.publish_batch
        )
        self.outbox = Outbox(folder / f"{leaf.site}-alerts.db")
        self.worker = DeliveryWorker(self.outbox, self.sink, SINK_RETRY, idle_poll_s=0.05)
        self.registry: QueryRegistry | None = None
        self.sync: FleetQuerySync | None = None
        self.applied: dict[str, float] = {}
        if queries:
            self.registry = QueryRegistry(folder / f"{leaf.site}-queries.db")
            self.sync = FleetQuerySync(self.link, self.registry, leaf.site, applied=self._applied)

    def _applied(self, key: str, action: str, at: float) -> None:
        if action in ("added", "updated"):
            self.applied.setdefault(key, at)

    def start(self) -> SiteAgent:
        self.link.start()
        self.worker.start()
        if self.sync is not None:
            self.sync.start()
        return self

    def emit(self, alert_id: str) -> None:
        self.outbox.enqueue(_payload(self.site, alert_id), ["fleet"], created_at=time.time())
        self.worker.wake()

    def close(self) -> None:
        self.worker.stop(2.0)
        self.link.close()
        self.outbox.close()
        if self.registry is not None:
            self.registry.close()


def _everywhere(sites: list[SiteAgent], key: str) -> bool:
    return all(key in site.applied for site in sites)


def propagation_and_latency(folder: Path) -> list[tuple[str, str, str]]:
    net = FleetNet(folder / "nats10", [f"site-{i:02d}" for i in range(10)]).start()
    sites = [SiteAgent(leaf, folder, queries=True).start() for leaf in net.leaves.values()]
    rows = []
    try:
        with FleetHub(net.hub_connection()) as hub:
            hub.provision(net.sites)
            wait_until(lambda: all(s.sync is not None and s.sync.synced for s in sites), 30, "syncs")
            spans = []
            for i in range(20):
                put_at = time.time()
                key = hub.put_query(FleetQuery(text=f"a person falling down number {i}"))
                wait_until(functools.partial(_everywhere, sites, key), 20, "applied everywhere")
                spans.append(max(s.applied[key] for s in sites) - put_at)
                time.sleep(0.1)
            rows.append(
                (
                    "query propagation, 10 sites",
                    f"p50 {_pct(spans, 0.5):.3f} s, p95 {_pct(spans, 0.95):.3f} s",
                    "p95 <= 1 s",
                )
            )
            received: dict[str, float] = {}

            def heard(payload: dict[str, Any], at: float) -> None:
                received.setdefault(payload["event_id"], at - payload["enqueued_at"])

            index = AlertIndex(on_event=heard)
            hub.follow_alerts(index)
            for i in range(60):
                sites[i % 2].emit(f"latency-{i}")
                time.sleep(0.05)
            wait_until(lambda: len(received) >= 60, 30, "every event at the hub")
            lat = list(received.values())
            rows.append(
                (
                    "alert latency outbox -> hub index",
                    f"p50 {_pct(lat, 0.5):.3f} s, p95 {_pct(lat, 0.95):.3f} s",
                    "p95 <= 1 s",
                )
            )
    finally:
        for site in sites:
            site.close()
        net.close()
    return rows


def _hub_counts(net: FleetNet, expected: int, timeout_s: float) -> tuple[AlertIndex, float]:
    """A fresh index rebuilt from the hub's stream; seconds until it held ``expected`` events."""
    index = AlertIndex()
    started = time.monotonic()
    with FleetHub(net.hub_connection(), timeout_s=20) as hub:
        hub.follow_alerts(index)
        with contextlib.suppress(AssertionError):  # fewer is what the row reports as lost
            wait_until(lambda: len(index.events) >= expected, timeout_s, "the hub's events")
        time.sleep(1.0)  # a late duplicate would show up here
    return index, time.monotonic() - started


def outage(folder: Path, outage_s: float) -> list[tuple[str, str, str]]:
    net = FleetNet(folder / "nats-outage", ["site-a"]).start()
    site = SiteAgent(net.leaves["site-a"], folder).start()
    try:
        with FleetHub(net.hub_connection()) as hub:
            hub.provision(net.sites)
        produced = 0
        stop = threading.Event()

        def raise_alerts() -> None:
            nonlocal produced
            while not stop.is_set():
                site.emit(f"outage-{produced}")
                produced += 1
                time.sleep(0.2)

        producer = threading.Thread(target=raise_alerts)
        producer.start()
        time.sleep(3)
        net.hub.stop()
        time.sleep(outage_s)
        before_restart = produced  # raised before and during the outage
        restarted = time.monotonic()
        net.hub.start()
        with FleetHub(net.hub_connection(), timeout_s=20) as hub:
            wait_until(lambda: hub.stored_events() >= before_restart, 120, "the hub caught up")
        caught_up = time.monotonic() - restarted
        time.sleep(2)  # alerts go on after the restart
        stop.set()
        producer.join()
        wait_until(lambda: sum(site.outbox.backlog(["fleet"]).values()) == 0, 30, "the outbox drained")
        index, _ = _hub_counts(net, produced, 120)
        lost = produced - len(index.events)
        dup = sum(n - 1 for n in index.events.values())
    finally:
        site.close()
        net.close()
    return [
        (
            f"uplink cut {outage_s:.0f} s ({produced} events)",
            f"lost {lost}, duplicated {dup}; hub caught up {caught_up:.2f} s after its restart",
            "0 and 0",
        )
    ]


def child_deliver(db: str, url: str, site: str) -> None:
    """The killed 'agent': deliver the outbox's backlog through the fleet sink, then exit."""
    from agent.fleet.config import FleetConfig

    config = FleetConfig(url=url, site=site, user="agent", password="agent-secret")
    link = NatsLink(config, site)
    sink = FleetSink("fleet", link, site, evidence_dir=None, batch_size=config.publish_batch)
    outbox = Outbox(Path(db))
    worker = DeliveryWorker(outbox, sink, SINK_RETRY, idle_poll_s=0.05)
    link.start()
    link.wait_connected(10)
    worker.start()
    while sum(outbox.backlog(["fleet"]).values()):
        time.sleep(0.05)
    worker.stop(2)
    link.close()


def sigkill(folder: Path, events: int = 400) -> list[tuple[str, str, str]]:
    net = FleetNet(folder / "nats-kill", ["site-k"]).start()
    leaf = net.leaves["site-k"]
    db = folder / "kill-alerts.db"
    try:
        with FleetHub(net.hub_connection()) as hub:
            hub.provision(net.sites)
        setup = SiteAgent(leaf, folder)  # provisions the leaf, fills the outbox
        setup.link.start()
        wait_until(lambda: setup.link.connected, 10, "the leaf")
        setup.link.call(provision_site(setup.link.jetstream(), "site-k"), 10)
        setup.link.close()
        outbox = Outbox(db)
        for i in range(events):
            outbox.enqueue(_payload("site-k", f"kill-{i}"), ["fleet"], created_at=time.time())
        command = [sys.executable, __file__, "--child-deliver", str(db), leaf.url, "site-k"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        child = subprocess.Popen(command, env=env)
        wait_until(lambda: sum(outbox.backlog(["fleet"]).values()) < events * 0.6, 60, "delivery under way")
        child.send_signal(signal.SIGKILL)
        child.wait()
        left = sum(outbox.backlog(["fleet"]).values())
        subprocess.run(command, env=env, check=True, timeout=120)
        outbox.close()
        index, _ = _hub_counts(net, events, 60)
        lost = events - len(index.events)
        dup = sum(n - 1 for n in index.events.values())
    finally:
        net.close()
    return [(f"SIGKILL mid-delivery ({left} of {events} left)", f"lost {lost}, duplicated {dup}", "0 and 0")]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _provision(link: NatsLink, site: str, ready: set[str] | None = None) -> None:
    # with its evidence bucket: the hub's mirror of it is waiting for it (no video sends any here)
    await provision_site(link.jetstream(), site)
    if ready is not None:
        ready.add(site)


def child_publish(sites_json: str, per_site: str, offset: str) -> None:
    """Simulated sites in one process: a link and the real fleet sink each; publish on "go"."""
    from agent.fleet.config import FleetConfig

    sites = json.loads(sites_json)
    ready: set[str] = set()
    links, sinks = [], []
    for site, url in sites:
        config = FleetConfig(url=url, site=site, user="agent", password="agent-secret")
        link = NatsLink(config, site)
        link.on_connect.append(functools.partial(_provision, link, site, ready))
        link.start()
        links.append(link)
        sinks.append(FleetSink("fleet", link, site, evidence_dir=None, batch_size=config.publish_batch))
    wait_until(lambda: len(ready) == len(sites), 120, "every site connected and provisioned")
    print("ready", flush=True)
    sys.stdin.readline()
    retries = 0

    def publish(sink: FleetSink) -> None:
        # what the delivery thread does: up to batch_size events at once, a failed one again
        nonlocal retries
        pending = [
            _payload(sink.site, f"{sink.site}-{i}") for i in range(int(offset), int(offset) + int(per_site))
        ]
        while pending:
            batch = pending[: sink.batch_size]
            outcomes = sink.send_many(batch)
            acked = {id(p) for p, outcome in zip(batch, outcomes, strict=False) if outcome is None}
            retries += len(outcomes) - len(acked)
            pending = [p for p in pending if id(p) not in acked]
            if len(outcomes) > len(acked):
                time.sleep(0.1)

    threads = [threading.Thread(target=publish, args=(sink,)) for sink in sinks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"done {retries}", flush=True)
    for link in links:
        link.close()


def _publishers(net: FleetNet, processes: int, per_site: int, offset: int) -> tuple[float, float, int]:
    """When the sites were told to go (monotonic seconds), how long they took to publish
    ``per_site`` events each, and the retries."""
    leaves = list(net.leaves.values())
    groups = [leaves[i::processes] for i in range(processes)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    children = []
    for group in groups:
        sites = json.dumps([[leaf.site, leaf.url] for leaf in group])
        command = [sys.executable, __file__, "--child-publish", sites, str(per_site), str(offset)]
        children.append(
            subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    started = time.monotonic()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    retries = 0
    for child in children:
        assert child.stdout is not None
        retries += int(child.stdout.readline().split()[1])
        child.wait(60)
    return started, time.monotonic() - started, retries


def ingest(
    folder: Path, n_sites: int, per_site: int, backlog: int, processes: int
) -> list[tuple[str, str, str]]:
    net = FleetNet(folder / "nats-ingest", [f"s{i:03d}" for i in range(n_sites)])
    net.start(timeout_s=120)
    try:
        with FleetHub(net.hub_connection(), timeout_s=30) as hub:
            hub.provision(net.sites)
            index = AlertIndex()
            hub.follow_alerts(index)
            total = n_sites * per_site
            started, published_s, retries = _publishers(net, processes, per_site, 0)
            wait_until(lambda: hub.stored_events() >= total, 300, "every event stored at the hub")
            stored_s = time.monotonic() - started
            wait_until(lambda: len(index.events) >= total, 300, "every event in the hub's index")
            listed_s = time.monotonic() - started
            rss = _rss_mb(net.hub.process.pid) if net.hub.process else float("nan")
        # catch-up: the hub down while every site raises a backlog, then started: the hub's own
        # ingest rate (from its first backlog event to its last), not the publishers'
        net.hub.stop()
        _publishers(net, processes, backlog, per_site)
        backlog_total = n_sites * backlog
        restarted = time.monotonic()
        net.hub.start()
        with FleetHub(net.hub_connection(), timeout_s=30) as hub:
            first = None  # the last poll that saw none of the backlog: the span is an upper bound
            last_empty = restarted
            while True:
                stored = hub.stored_events()
                now = time.monotonic()
                if stored <= total:
                    last_empty = now
                elif first is None:
                    first = last_empty
                if stored >= total + backlog_total:
                    break
                if now - restarted > 300:
                    raise AssertionError(f"the hub holds {stored} of {total + backlog_total} after 300 s")
                time.sleep(0.02)
            assert first is not None
            caught_s, ingest_s = now - restarted, max(now - first, 1e-3)
            index = AlertIndex()
            rebuilt = time.monotonic()
            hub.follow_alerts(index)
            wait_until(lambda: len(index.events) >= total + backlog_total, 300, "the index rebuilt")
            rebuild_s = time.monotonic() - rebuilt
            rss_after = _rss_mb(net.hub.process.pid) if net.hub.process else float("nan")
            me = _rss_mb(os.getpid())
    finally:
        net.close()
    return [
        (
            f"hub ingest, {n_sites} sites x {per_site} events live",
            f"published {total / published_s:,.0f}/s ({retries} retries), stored {total / stored_s:,.0f}/s, "
            f"listed {total / listed_s:,.0f}/s; hub RSS {rss:.0f} MB",
            ">= 2,000 events/s",
        ),
        (
            f"hub catch-up, {n_sites} sites x {backlog} held",
            f"hub stored >= {backlog_total / ingest_s:,.0f}/s (all {caught_s:.1f} s after its restart); "
            f"index rebuilt {(total + backlog_total) / rebuild_s:,.0f}/s; hub RSS {rss_after:.0f} MB, "
            f"index process {me:.0f} MB",
            ">= 2,000 events/s",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--ingest-sites", type=int, default=100)
    parser.add_argument("--ingest-events", type=int, default=100, help="per site, live")
    parser.add_argument("--backlog-events", type=int, default=100, help="per site, held during a hub outage")
    parser.add_argument(
        "--publisher-processes", type=int, default=4, help="processes the sites are spread over"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["propagation", "outage", "sigkill", "ingest"])
    parser.add_argument("--child-deliver", nargs=3, metavar=("DB", "URL", "SITE"), help=argparse.SUPPRESS)
    parser.add_argument("--child-publish", nargs=3, metavar=("SITES", "N", "OFFSET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_publish:
        child_publish(*args.child_publish)
        return
    if args.child_deliver:
        child_deliver(*args.child_deliver)
        return
    # SIGTERM ends the bench through its finally blocks, so no nats-server is left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.outage_s, args.ingest_sites = 10.0, 20
    folder = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    rows: list[tuple[str, str, str]] = []
    parts = {
        "propagation": lambda: propagation_and_latency(folder),
        "outage": lambda: outage(folder, args.outage_s),
        "sigkill": lambda: sigkill(folder),
        "ingest": lambda: ingest(
            folder, args.ingest_sites, args.ingest_events, args.backlog_events, args.publisher_processes
        ),
    }
    for name, part in parts.items():
        if args.only in (None, name):
            rows += part()
            for row in rows[-2:] if name == "ingest" else rows[-1:]:
                print(json.dumps(row), flush=True)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':{width}s}  {'result':80s}  target")
    for name, result, target in rows:
        print(f"{name:{width}s}  {result:80s}  {target}")


if __name__ == "__main__":
    main()
