"""One NATS connection on its own asyncio thread, shared by the fleet's parts.

nats-py is asyncio; the agent's threads (the outbox's delivery thread, the heartbeat) hand it
coroutines with :meth:`NatsLink.call` and wait for the result with a timeout. The link connects in
the background and keeps reconnecting (nats-py's own reconnect once the first connection is made;
until then, one attempt every ``retry_s``), so an agent starts with its site's server down.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from agent.fleet.config import NatsConnectionConfig
from agent.redact import redact_text

log = logging.getLogger(__name__)

T = TypeVar("T")


class LinkError(RuntimeError):
    """The NATS server is not reachable (yet), or a call did not finish in time."""


class NatsLink:
    """A background NATS client.

    Args:
        config: the server and credentials.
        name: the client's name in the server's connection list.
        retry_s: seconds between first-connection attempts.
        inbox_prefix: where request replies arrive (a site's own subjects), instead of ``_INBOX``.
        on_connect: coroutine functions run after every (re)connection, on the link's loop.
    """

    def __init__(
        self,
        config: NatsConnectionConfig,
        name: str,
        *,
        retry_s: float = 0.5,
        inbox_prefix: str | None = None,
    ) -> None:
        self.config = config
        self.inbox_prefix = inbox_prefix
        self.name = name
        self.retry_s = retry_s
        self.on_connect: list[Callable[[], Awaitable[None]]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"nats-{name}", daemon=True)
        self._client: Client | None = None
        self._connected = threading.Event()
        self._closing = False
        self._connector: concurrent.futures.Future[None] | None = None
        self._start_lock = threading.Lock()
        self.last_problem = "not connected yet"
        self.connections = 0  # (re)connections so far: watchers start again after a reconnection

    @property
    def shown_url(self) -> str:
        return redact_text(self.config.url)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def start(self) -> None:
        """Start the loop thread and the background connection (returns at once)."""
        with self._start_lock:
            if self._connector is not None or self._closing:
                return
            self._thread.start()
            self._connector = asyncio.run_coroutine_threadsafe(self._connect_forever(), self._loop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _connect_forever(self) -> None:
        options = self.config.connect_options()
        while not self._closing:
            try:
                self._client = await nats.connect(
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self.retry_s,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                    **({} if self.inbox_prefix is None else {"inbox_prefix": self.inbox_prefix}),
                    **options,  # type: ignore[arg-type]
                )
            except Exception as exc:  # refused, timed out, bad credentials: try again
                self.last_problem = redact_text(f"cannot connect to {self.config.url}: {exc!r}")
                await asyncio.sleep(self.retry_s)
                continue
            log.info("fleet: connected to %s", self.shown_url)
            await self._connected_now()
            return

    def once_connected(self, setup: Callable[[], Awaitable[None]]) -> None:
        """Run ``setup`` once, as soon as the link is (or now that it is) connected: for
        subscriptions, which nats-py restores by itself after a reconnection (``on_connect`` hooks
        run after every connection, for what the server may have lost: streams)."""

        async def run_once() -> None:
            while not self.connected:
                await asyncio.sleep(0.05)
            try:
                await setup()
            except Exception as exc:
                log.warning("fleet: setting up on %s: %s", self.shown_url, redact_text(repr(exc)))

        self.start()
        self.spawn(run_once())

    async def _connected_now(self) -> None:
        self.connections += 1
        self._connected.set()
        for hook in self.on_connect:
            try:
                await hook()
            except Exception as exc:
                log.warning("fleet: after connecting to %s: %s", self.shown_url, redact_text(repr(exc)))

    async def _on_error(self, exc: Exception) -> None:
        self.last_problem = redact_text(repr(exc))
        if not self._closing:
            log.debug("fleet: %s: %s", self.shown_url, self.last_problem)

    async def _on_disconnect(self) -> None:
        self._connected.clear()
        if not self._closing:
            self.last_problem = "disconnected"
            log.warning("fleet: disconnected from %s", self.shown_url)

    async def _on_reconnect(self) -> None:
        log.info("fleet: reconnected to %s", self.shown_url)
        await self._connected_now()

    def client(self) -> Client:
        """The connected client (on the link's loop only). Raises :class:`LinkError` when not connected."""
        client = self._client
        if client is None or not client.is_connected:
            raise LinkError(f"not connected to {self.shown_url} ({self.last_problem})")
        return client

    def jetstream(self, domain: str | None = None) -> JetStreamContext:
        """The JetStream context of the local server, or of another ``domain``."""
        return self.client().jetstream(domain=domain)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run ``coroutine`` on the link's loop and wait up to ``timeout_s`` seconds for its result.

        Raises:
            LinkError: it did not finish in time (it is cancelled).
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise LinkError(f"no answer from {self.shown_url} within {timeout_s} s") from exc

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        """Run a long-lived task on the link's loop (a watcher); cancelled by :meth:`close`."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Drain the connection and stop the loop thread within about ``timeout_s`` seconds."""
        if not self._thread.is_alive():
            return
        self._closing = True

        async def shutdown() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=timeout_s / 4) if tasks else None
            client = self._client
            if client is not None and not client.is_closed:
                try:
                    await asyncio.wait_for(client.close(), timeout_s / 2)
                except Exception as exc:
                    log.debug("fleet: closing %s: %r", self.shown_url, exc)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout_s)
        except Exception as exc:
            log.debug("fleet: shutdown of %s: %r", self.shown_url, exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        self._connected.clear()
