"""A site's uplink credentials at the hub: its own subjects only, never another site's.

The leaf node of site A connects to the hub with these credentials, so what a client using them
cannot do at the hub, site A's leaf cannot do either (agent/fleet/natsconf.py writes the rules).
"""

from __future__ import annotations

import asyncio

import nats

from agent.fleet.hub import FleetHub, read_object
from agent.fleet.link import NatsLink
from agent.fleet.provision import provision_site
from agent.fleet.subjects import evidence_bucket
from tests.agent.alerts.helpers import wait_until
from tests.fixtures.nats_fleet import FleetNet


def _put_evidence(net: FleetNet, site: str) -> None:
    link = NatsLink(net.leaves[site].agent_fleet_config(), site)
    link.start()
    try:
        assert link.wait_connected(10)

        async def put() -> None:
            await provision_site(link.jetstream(), site)
            store = await link.jetstream().object_store(evidence_bucket(site))
            await store.put("alert-b/crop.jpg", b"site b's crop")

        link.call(put(), 10)
    finally:
        link.close()


def test_site_a_cannot_publish_as_site_b_nor_read_its_evidence(
    fleet_net: FleetNet, fleet_hub: FleetHub
) -> None:
    _put_evidence(fleet_net, "site-b")
    bucket = evidence_bucket("site-b")
    wait_until(lambda: _hub_reads(fleet_hub, bucket), 10, "site-b's evidence at the hub")

    async def as_site_a() -> tuple[list[str], bool, bool, bool]:
        errors: list[str] = []

        async def error_cb(exc: Exception) -> None:
            errors.append(str(exc))

        options = fleet_net.site_connection_to_hub("site-a").connect_options()
        client = await nats.connect(error_cb=error_cb, **options)  # type: ignore[arg-type]
        try:
            # its own subjects pass
            await client.publish("watchword.site-a.alerts.cam1", b"{}")
            # another site's alert subject is refused by the hub
            await client.publish("watchword.site-b.alerts.cam1", b"{}")
            await client.flush()
            # another site's subjects cannot be read
            await client.subscribe("watchword.site-b.>")
            await client.flush()
            await asyncio.sleep(0.3)  # the server's -ERR arrives asynchronously
            js = client.jetstream(domain="hub", timeout=1.0)
            try:
                await asyncio.wait_for(read_object(js, bucket, "alert-b/crop.jpg"), 3)
                read_b = True
            except Exception:  # no responders or a timeout: the hub never forwarded the request
                read_b = False
            try:
                await js.stream_info(f"OBJ_{bucket}")
                info_b = True
            except Exception:
                info_b = False
            try:
                await js.publish("watchword.site-b.alerts.cam1", b"{}", timeout=1)
                published_b = True
            except Exception:
                published_b = False
            return errors, read_b, info_b, published_b
        finally:
            await client.close()

    errors, read_b, info_b, published_b = asyncio.run(as_site_a())
    assert any("publish" in e.lower() and "watchword.site-b.alerts.cam1" in e for e in errors), errors
    assert any("subscri" in e.lower() and "watchword.site-b.>" in e for e in errors), errors
    assert not any("watchword.site-a" in e for e in errors)
    assert not read_b and not info_b and not published_b


def _hub_reads(hub: FleetHub, bucket: str) -> bool:
    try:
        return hub.evidence(bucket, "alert-b/crop.jpg") == b"site b's crop"
    except Exception:
        return False


def test_the_site_user_cannot_use_the_hub_api_for_other_streams(
    fleet_net: FleetNet, fleet_hub: FleetHub
) -> None:
    async def as_site_a() -> bool:
        client = await nats.connect(**fleet_net.site_connection_to_hub("site-a").connect_options())  # type: ignore[arg-type]
        try:
            await client.jetstream(domain="hub", timeout=1.0).stream_info("WATCHWORD_ALERTS")
            return True
        except Exception:
            return False
        finally:
            await client.close()

    assert asyncio.run(as_site_a()) is False


def test_fleet_credentials_are_redacted() -> None:
    secret = "uplink-secret-123"
    from agent.fleet.config import FleetConfig
    from agent.redact import redact_text

    config = FleetConfig(url=f"nats://agent:{secret}@127.0.0.1:4222", site="site-a")
    assert secret not in redact_text(f"cannot connect to {config.url}")
    assert secret not in repr(FleetConfig(site="site-a", user="agent", password=secret))
