"""The HTTP API (FastAPI): queries CRUD, alerts, evidence, health and Prometheus metrics."""

from agent.api.app import ApiContext, create_app
from agent.api.config import ApiConfig
from agent.api.server import ApiServer

__all__ = ["ApiConfig", "ApiContext", "ApiServer", "create_app"]
