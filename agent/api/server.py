"""Runs the API with uvicorn in a background thread of the agent.

Proxy headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are read only from ``api.trusted_proxies``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from agent.api.config import ApiConfig

log = logging.getLogger(__name__)


class ApiServer:
    """Serves ``app`` on ``host:port`` (port 0 picks a free one) until :meth:`stop`.

    ``settings`` gives the trusted proxies (the ``api:`` section; its host, port and token are not
    read here); None uses the defaults.
    """

    def __init__(self, app: FastAPI, host: str, port: int, settings: ApiConfig | None = None) -> None:
        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = int(probe.getsockname()[1])
        self.host, self.port = host, port
        self.settings = settings if settings is not None else ApiConfig()
        proxies = [str(network) for network in self.settings.trusted_proxies]
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API could not start on {self.host}:{self.port}")
            time.sleep(0.02)
        log.info("API listening on %s", self.url)

    def stop(self, timeout_s: float = 3.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
