"""The HTTP API (FastAPI): queries CRUD, alerts, evidence, health and Prometheus metrics.

Import from the submodules (``agent.api.app``, ``agent.api.server``); this package imports nothing
so that reading the config does not load FastAPI.
"""
