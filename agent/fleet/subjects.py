"""Names of the fleet's subjects, streams and buckets, in one place (the README lists them).

A site id is one subject token and part of bucket and stream names: letters, digits, ``_`` and
``-``. At a site (its leaf node, JetStream domain = the site id) the agent creates:

- ``WATCHWORD_ALERTS`` on ``watchword.<site>.alerts.>`` (the event id is the message id);
- the object store ``watchword-evidence-<site>`` (stream ``OBJ_watchword-evidence-<site>``);
- ``KV_watchword-queries``, a mirror of the hub's fleet-query bucket (read by the agent);
- ``WATCHWORD_REVIEWS``, a mirror of the hub's ``WATCHWORD_REVIEWS_<site>``.

At the hub (domain ``hub``) the fleet commands create ``WATCHWORD_ALERTS`` sourcing every site's
alerts, a mirror of each site's evidence bucket, the KV bucket ``watchword-queries`` and one review
stream per site on ``watchword.<site>.reviews``.
"""

from __future__ import annotations

SITE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
HUB_DOMAIN = "hub"
PREFIX = "watchword"
QUERIES_BUCKET = "watchword-queries"
ALERTS_STREAM = "WATCHWORD_ALERTS"
REVIEWS_STREAM = "WATCHWORD_REVIEWS"
# The largest alert event JetStream will take (the evidence itself goes to the object store).
MAX_ALERT_BYTES = 1024 * 1024


def alert_subject(site: str, camera: str) -> str:
    """``watchword.<site>.alerts.<camera>``: one camera's alert events."""
    return f"{PREFIX}.{site}.alerts.{camera}"


def site_alerts(site: str) -> str:
    """Every alert subject of a site (a stream's subject filter)."""
    return f"{PREFIX}.{site}.alerts.>"


def health_subject(site: str) -> str:
    """``watchword.<site>.health``: the agent's heartbeat."""
    return f"{PREFIX}.{site}.health"


def reviews_subject(site: str) -> str:
    """``watchword.<site>.reviews``: review marks the hub sends down to a site."""
    return f"{PREFIX}.{site}.reviews"


def sync_prefix(site: str) -> str:
    """The deliver prefix of the mirrors and sources between a site and the hub.

    It lies under the site's own subjects, so the site's credentials need no wider permission.
    """
    return f"{PREFIX}.{site}.sync"


def evidence_bucket(site: str) -> str:
    """The object store holding a site's evidence (the same name at the site and its hub mirror)."""
    return f"watchword-evidence-{site}"


def hub_reviews_stream(site: str) -> str:
    """The hub's stream of review marks for one site."""
    return f"{REVIEWS_STREAM}_{site}"


def domain_api(domain: str) -> str:
    """The JetStream API prefix of a domain: ``$JS.<domain>.API``."""
    return f"$JS.{domain}.API"


def evidence_name(alert_id: str, file_name: str) -> str:
    """An evidence object's name: ``<alert_id>/<file>`` (``crop.jpg``, ``frame.jpg``, ``evidence.json``)."""
    return f"{alert_id}/{file_name}"
