"""The fleet: every site's agent on a NATS leaf node (its own JetStream domain) sourced to a hub.

Subjects and buckets (the README's "Fleet" section; :mod:`agent.fleet.subjects` names them):
alerts up on ``watchword.<site>.alerts.<camera>``, health on ``watchword.<site>.health``, evidence
in the object store ``watchword-evidence-<site>``, fleet queries down from the KV bucket
``watchword-queries``, review marks down on ``watchword.<site>.reviews``.
"""
