"""Runs the API with uvicorn in a background thread of the agent.

uvicorn runs with the guarded h11 protocol of :mod:`agent.api.connections` (request timeout and a
connection cap under the open-file limit), a small listen backlog, no WebSocket support (no route
needs it), and its log records going to the agent's handlers (redacted and rate-limited there).
Proxy headers are read only from ``api.trusted_proxies``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from agent.api.config import ApiConfig
from agent.api.connections import LISTEN_BACKLOG, ConnectionLimits, GuardedH11Protocol, connection_cap
from agent.api.metrics import Metric

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 5


class ApiServer:
    """Serves ``app`` on ``host:port`` (port 0 picks a free one) until :meth:`stop`.

    ``settings`` gives the connection limits and trusted proxies (the ``api:`` section; its host,
    port and token are not read here); None uses the defaults.
    """

    def __init__(self, app: FastAPI, host: str, port: int, settings: ApiConfig | None = None) -> None:
        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = int(probe.getsockname()[1])
        self.host, self.port = host, port
        self.settings = settings if settings is not None else ApiConfig()
        self.connections = ConnectionLimits(self.settings.max_connections, self.settings.request_timeout_s)
        proxies = [str(network) for network in self.settings.trusted_proxies]
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            http=GuardedH11Protocol.factory(self.connections),
            ws="none",
            backlog=LISTEN_BACKLOG,
            timeout_keep_alive=KEEP_ALIVE_S,
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        cap, sizing = connection_cap(self.settings.max_connections, self.settings.reserved_files)
        self.connections.max_connections = cap
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API could not start on {self.host}:{self.port}")
            time.sleep(0.02)
        log.info("API listening on %s", self.url)
        log.info("API: %s; a request must arrive within %g s", sizing, self.settings.request_timeout_s)

    def stop(self, timeout_s: float = 3.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)

    def metrics(self) -> list[Metric]:
        """The server's connection numbers (``watchword_api_connections*``)."""
        return self.connections.metrics()
