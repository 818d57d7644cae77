"""Per-client lockout after failed authentication: a wrong bearer token or a wrong sign-in.

A client is the address the connection comes from (``scope["client"]``; behind a proxy listed in
``api.trusted_proxies``, the address that proxy forwarded). An IPv6 client is its /64 network, the
block one host is usually given. After ``max_failures`` failures within ``window_s`` seconds the
client is locked out for ``lockout_s``; a lockout that follows the previous one within
``max_lockout_s`` lasts twice as long as it did, up to ``max_lockout_s``. While locked out, its
requests that carry a token (and its sign-ins) are answered 429 without looking at the token, so a
right guess is not told apart from a wrong one. A right token from another client works as ever,
and so does a console session cookie (not guessable, and not a token). A success forgets the
client's failures. Lockouts are logged (a few a minute at most, with a count of the rest) and
counted in ``/metrics``.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, model_validator

from agent.api.metrics import Metric
from agent.config_rules import StrictConfigModel
from agent.log_limits import LogBudget

log = logging.getLogger(__name__)

FAILURE_METHODS = ("bearer", "sign_in")


class AuthLockoutConfig(StrictConfigModel):
    """``api.auth_lockout``: how many failed authentications lock a client out, and for how long."""

    max_failures: int = Field(
        10, ge=1, le=100_000, description="failed authentications within window_s that lock a client out"
    )
    window_s: float = Field(60.0, gt=0, le=86_400, description="seconds over which failures count")
    lockout_s: float = Field(60.0, gt=0, le=86_400, description="the first lockout, seconds")
    max_lockout_s: float = Field(
        900.0, gt=0, le=7 * 86_400, description="each lockout soon after another doubles, up to this"
    )
    max_clients: int = Field(
        10_000, ge=16, le=1_000_000, description="clients remembered; the least recent are forgotten"
    )

    @model_validator(mode="after")
    def _longest_at_least_first(self) -> AuthLockoutConfig:
        if self.max_lockout_s < self.lockout_s:
            raise ValueError("max_lockout_s must be at least lockout_s")
        return self


def client_key(scope: Mapping[str, Any]) -> str:
    """Who a request comes from: its IPv4 address, its IPv6 /64, or the raw client text."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Client:
    failures: list[float] = field(default_factory=list)
    lockouts: int = 0
    locked_until: float = 0.0


class AuthLockout:
    """The failures and lockouts of every client (see the module docstring). Thread-safe: the API
    guard calls it on the event loop, the sign-in route on a worker thread."""

    def __init__(self, config: AuthLockoutConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()
        self._log_budget = LogBudget(clock=clock)
        self.failures = dict.fromkeys(FAILURE_METHODS, 0)
        self.lockouts = 0
        self.refused = 0

    def locked_for(self, client: str) -> float:
        """Seconds ``client`` stays locked out (0 when it is not); a positive answer counts as a
        refused request."""
        now = self._clock()
        with self._lock:
            state = self._clients.get(client)
            if state is None or state.locked_until <= now:
                return 0.0
            self.refused += 1
            return state.locked_until - now

    def failed(self, client: str, method: str) -> float:
        """Record a failed authentication (``bearer`` or ``sign_in``); returns the lockout in
        seconds when this failure starts one, else 0."""
        now = self._clock()
        config = self.config
        with self._lock:
            self.failures[method] = self.failures.get(method, 0) + 1
            state = self._clients.get(client)
            if state is None:
                state = self._clients[client] = _Client()
                while len(self._clients) > config.max_clients:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(client)
            if state.lockouts and now - state.locked_until > config.max_lockout_s:
                state.lockouts = 0  # quiet long enough: the next lockout is the short one again
            state.failures = [t for t in state.failures if now - t < config.window_s]
            state.failures.append(now)
            if len(state.failures) < config.max_failures:
                return 0.0
            lockout_s = min(config.max_lockout_s, config.lockout_s * 2.0**state.lockouts)
            state.lockouts += 1
            state.locked_until = now + lockout_s
            state.failures = []
            self.lockouts += 1
        refused = self._log_budget.take()
        if refused is not None:
            also = f" ({refused} more lockouts not logged)" if refused else ""
            log.warning(
                "api: client %s locked out for %.0f s after %d failed authentications in %.0f s%s",
                client,
                lockout_s,
                config.max_failures,
                config.window_s,
                also,
            )
        return lockout_s

    def succeeded(self, client: str) -> None:
        """A right token or sign-in: the client's failures are forgotten."""
        with self._lock:
            self._clients.pop(client, None)

    def locked_clients(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for state in self._clients.values() if state.locked_until > now)

    def metrics(self) -> list[Metric]:
        """``watchword_api_auth_*``: failures by method, lockouts, refused requests, clients locked out."""
        failures = Metric(
            "watchword_api_auth_failures_total", "counter", "Failed API authentications (wrong token)"
        )
        for method, count in self.failures.items():
            failures.add(count, method=method)
        return [
            failures,
            Metric("watchword_api_auth_lockouts_total", "counter", "API clients locked out").add(
                self.lockouts
            ),
            Metric(
                "watchword_api_auth_refused_total",
                "counter",
                "Requests refused (429) from locked-out clients",
            ).add(self.refused),
            Metric("watchword_api_auth_clients_locked_out", "gauge", "API clients locked out now").add(
                self.locked_clients()
            ),
        ]


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up."""
    return str(max(1, math.ceil(seconds)))
