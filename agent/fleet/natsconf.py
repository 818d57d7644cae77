"""nats-server configuration files for a fleet: the hub and one leaf node per site.

The hub runs JetStream in the domain ``hub`` and accepts leaf connections; each site has a user in
the ``FLEET`` account whose permissions (applied to its leaf connection, and to a client using the
same credentials) allow only what the site needs:

- publish: its own subjects ``watchword.<site>.>`` (alerts, health, and the deliveries of the hub's
  sources, whose prefix is under them), the replies of the JetStream API (``$JSC.R.>``), flow
  control (``$JS.FC.>``), and the two consumers it needs at the hub: on the fleet-query bucket and
  on its own review stream;
- subscribe (what the hub sends into the leaf): its own subjects, its own domain's JetStream API
  (the hub's sources create their consumers there), the replies and flow control.

So a site cannot publish as another site, nor read another site's alerts, evidence or reviews at
the hub (``tests/agent/fleet/test_fleet_security.py``). A leaf runs JetStream in the domain named
after its site, with one local user for the agent on loopback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agent.fleet.subjects import HUB_DOMAIN, PREFIX, QUERIES_BUCKET, hub_reviews_stream, sync_prefix

ACCOUNT = "FLEET"


def _q(value: str) -> str:
    """A quoted string in the server's config syntax (JSON quoting is accepted)."""
    return json.dumps(value)


def _list(values: list[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


@dataclass(frozen=True)
class SiteUser:
    """One site's credentials at the hub (the leaf connects with them)."""

    site: str
    password: str


def site_permissions(site: str) -> str:
    """The ``permissions`` block of a site's user at the hub."""
    publish = [
        f"{PREFIX}.{site}.>",
        "$JSC.R.>",
        "$JS.FC.>",
        f"$JS.{HUB_DOMAIN}.API.CONSUMER.CREATE.KV_{QUERIES_BUCKET}",
        f"$JS.{HUB_DOMAIN}.API.CONSUMER.CREATE.{hub_reviews_stream(site)}",
    ]
    subscribe = [f"{PREFIX}.{site}.>", "$JSC.R.>", "$JS.FC.>", f"$JS.{site}.API.>"]
    assert sync_prefix(site).startswith(f"{PREFIX}.{site}.")
    return f"permissions: {{publish: {{allow: {_list(publish)}}}, subscribe: {{allow: {_list(subscribe)}}}}}"


def hub_config(
    *,
    port: int,
    leaf_port: int,
    store_dir: Path,
    admin_user: str,
    admin_password: str,
    sites: list[SiteUser],
    host: str = "0.0.0.0",
    server_name: str = "watchword-hub",
    monitor_port: int | None = None,
) -> str:
    """The hub's nats-server configuration (one node; a cluster adds a ``cluster`` block)."""
    users = [f"{{user: {_q(admin_user)}, password: {_q(admin_password)}}}"]
    users += [
        f"{{user: {_q(s.site)}, password: {_q(s.password)}, {site_permissions(s.site)}}}" for s in sites
    ]
    lines = [
        f"server_name: {_q(server_name)}",
        f"host: {_q(host)}",
        f"port: {port}",
        *([f"http_port: {monitor_port}"] if monitor_port is not None else []),
        f"jetstream {{store_dir: {_q(str(store_dir))}, domain: {HUB_DOMAIN}}}",
        f"leafnodes {{host: {_q(host)}, port: {leaf_port}}}",
        "accounts {",
        f"  {ACCOUNT}: {{",
        "    jetstream: enabled",
        "    users: [",
        *(f"      {user}" for user in users),
        "    ]",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def leaf_config(
    *,
    site: str,
    port: int,
    store_dir: Path,
    hub_leaf_url: str,
    site_password: str,
    agent_user: str,
    agent_password: str,
    host: str = "127.0.0.1",
) -> str:
    """A site's leaf-node configuration: JetStream in the domain ``<site>``, one local user.

    ``hub_leaf_url`` is ``nats-leaf://HOST:PORT`` (the hub's leaf port); the site's credentials are
    put in it here.
    """
    scheme, _, rest = hub_leaf_url.partition("://")
    url = f"{scheme}://{site}:{site_password}@{rest}"
    agent = f"{{user: {_q(agent_user)}, password: {_q(agent_password)}}}"
    lines = [
        f"server_name: {_q(site)}",
        f"host: {_q(host)}",
        f"port: {port}",
        f"jetstream {{store_dir: {_q(str(store_dir))}, domain: {_q(site)}}}",
        "accounts {",
        f"  {ACCOUNT}: {{jetstream: enabled, users: [{agent}]}}",
        "}",
        f"leafnodes {{remotes: [{{url: {_q(url)}, account: {ACCOUNT}}}]}}",
    ]
    return "\n".join(lines) + "\n"
