"""Configuration of the alerts subsystem: episodes, evidence, the outbox and its sinks.

Nested into the agent config as ``alerts:``. Sinks are chosen by a ``type`` field; each sink has a
``name`` (by default its type) that keys its rows in the outbox, so renaming a sink starts a new
delivery queue for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from agent.config_rules import StrictConfigModel

SINK_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MQTT_TOPIC_LEVEL = r"^[^/#+]+$"


class _StrictModel(StrictConfigModel):
    """Unknown keys refused, frozen, finite numbers only, no YAML boolean where a number goes."""


UnverifiedAction = Literal["raise", "hold"]


class UnverifiedPolicy(_StrictModel):
    """What an ``unverified`` candidate does, per query severity: ``raise`` an alert or ``hold`` it."""

    critical: UnverifiedAction = "raise"
    warning: UnverifiedAction = "hold"
    info: UnverifiedAction = "hold"

    def action(self, severity: str) -> UnverifiedAction:
        """The action for a severity (an unknown severity holds)."""
        value = getattr(self, severity, "hold") if severity in type(self).model_fields else "hold"
        return "raise" if value == "raise" else "hold"


class RetryConfig(_StrictModel):
    """Capped exponential backoff between delivery attempts of one sink, in seconds.

    ``max_attempts`` None retries until the sink acknowledges; a number moves the event to the dead
    letters of that sink after that many attempts. An event the receiver refuses for good (HTTP 4xx
    other than 408 and 429) goes there after ``permanent_attempts``. Dead letters are listed and
    sent again by hand (``watchword alerts dead-letters``, ``GET /dead-letters``).
    """

    initial_s: float = Field(default=1.0, gt=0)
    max_s: float = Field(default=60.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    max_attempts: int | None = Field(default=None, ge=1)
    permanent_attempts: int = Field(
        default=3, ge=1, le=100, description="tries of an event the receiver refuses for good (HTTP 4xx)"
    )

    @model_validator(mode="after")
    def _max_at_least_initial(self) -> RetryConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be at least initial_s")
        return self

    def delay_s(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        return float(min(self.max_s, self.initial_s * self.factor ** max(0, attempts - 1)))


class _SinkBase(_StrictModel):
    name: str = Field(default="", pattern=SINK_NAME, description="outbox key; defaults to the type")
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("type"), str):
            return {**data, "name": data["type"]}
        return data


class JsonlSinkConfig(_SinkBase):
    """Appends one JSON line per alert event to ``path``; ``fsync`` makes each line durable."""

    type: Literal["jsonl"]
    path: Path
    fsync: bool = True


class WebhookSinkConfig(_SinkBase):
    """POSTs each alert event as JSON; any 2xx answer is the acknowledgement.

    With a ``secret``, the header ``X-Watchword-Signature: sha256=<hex>`` carries the HMAC-SHA256 of
    the exact request body under that secret. A ``user:password@`` in the URL is sent as HTTP basic
    authentication (``Authorization: Basic``), so ``headers`` may not set ``Authorization`` as well.
    """

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://[^\s]+$")
    secret: SecretStr | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=300)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        reserved = {"content-type", "content-length"}
        bad = [key for key in headers if key.lower() in reserved or key.lower().startswith("x-watchword-")]
        if bad:
            raise ValueError(f"headers set by the sink itself cannot be overridden: {', '.join(bad)}")
        return headers

    @field_validator("url")
    @classmethod
    def _no_control_characters(cls, url: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in url):
            raise ValueError("the URL has control characters (percent-encode them)")
        return url

    @model_validator(mode="after")
    def _one_authorization(self) -> WebhookSinkConfig:
        userinfo = self.url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        if "@" in userinfo and any(key.lower() == "authorization" for key in self.headers):
            raise ValueError(
                "url has user:password@ (sent as basic authentication) and headers has Authorization; "
                "keep one"
            )
        return self


class MqttSinkConfig(_SinkBase):
    """Publishes each alert event to ``<topic_prefix>/<site>/alerts/<camera>``; the PUBACK is the ack."""

    type: Literal["mqtt"]
    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = Field(default=None, description="CA bundle for TLS; None uses the system's")
    client_id: str = Field(default="", description="empty: a random id chosen by the client")
    qos: Literal[1, 2] = 1
    topic_prefix: str = Field(default="watchword", pattern=MQTT_TOPIC_LEVEL)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="wait for the connection and the ack")
    reconnect_min_s: int = Field(default=1, ge=1, description="paho's reconnect backoff, whole seconds")
    reconnect_max_s: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _reconnect_order(self) -> MqttSinkConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        return self


SinkConfig = Annotated[JsonlSinkConfig | WebhookSinkConfig | MqttSinkConfig, Field(discriminator="type")]


class ClipConfig(_StrictModel):
    """The short video of an alert (``clip.webm`` in its evidence folder), recorded while the console
    runs: the analysed frames from ``before_s`` before the alert opened to ``after_s`` after it, in
    media seconds. The opening payload names it ahead (``evidence.clip``); it exists about
    ``after_s`` later."""

    enabled: bool = True
    before_s: float = Field(default=4.0, ge=0, le=30)
    after_s: float = Field(default=4.0, ge=0, le=30)

    @model_validator(mode="after")
    def _some_video(self) -> ClipConfig:
        if self.before_s + self.after_s <= 0:
            raise ValueError("before_s + after_s must be more than 0 seconds")
        return self


class AlertsConfig(_StrictModel):
    """Episodes, cooldown, evidence retention, the SQLite outbox and the sinks.

    Attributes:
        database: SQLite file of the outbox and alert history.
        evidence_dir: one folder per alert with crop.jpg, frame.jpg and evidence.json.
        retention_days: delete evidence and delivered alert history older than this.
        retention_bytes: keep the evidence folder under this size, deleting the oldest first.
        cooldown_s: after an episode opens for a (camera, query), no other opens for this long.
        episode_quiet_s: close an episode after this long without an accepted candidate.
        update_interval_s: at most one "updated" event per episode this often (a re-ranker
            verdict that changes is sent at once).
        require_verified: candidates that were not re-ranked at all (no ``verification``) open
            no episode. Re-ranked candidates follow their state: verified opens, rejected never
            does, unverified follows ``unverified``.
        unverified: per severity, what an ``unverified`` candidate (the LMM said nothing readable,
            failed, or was never asked for budget or deadline) does: ``raise`` opens the alert
            (its payload says ``unverified`` and why), ``hold`` opens nothing.
        crop_padding: crop margin around the box, as a fraction of the box's width/height.
        jpeg_quality: 0-100 for the evidence JPEGs.
        prune_interval_s: how often :meth:`AlertManager.tick` applies the retention limits.
        drain_timeout_s: on close, wait this long for the sinks to empty their backlog.
        memory_buffer_events: events held in memory, and retried, while the outbox cannot store
            them (disk full); beyond this many, new events are dropped and counted.
        clip: the alert's short video (:class:`ClipConfig`).
    """

    database: Path = Path("data/alerts.db")
    evidence_dir: Path = Path("data/evidence")
    retention_days: float | None = Field(default=30.0, gt=0)
    retention_bytes: int | None = Field(default=2 * 1024**3, gt=0)
    cooldown_s: float = Field(default=60.0, ge=0)
    episode_quiet_s: float = Field(default=30.0, gt=0)
    update_interval_s: float = Field(default=10.0, ge=0)
    require_verified: bool = False
    unverified: UnverifiedPolicy = Field(default_factory=lambda: UnverifiedPolicy())
    crop_padding: float = Field(default=0.1, ge=0, le=1)
    jpeg_quality: int = Field(default=90, ge=10, le=100)
    prune_interval_s: float = Field(default=600.0, gt=0)
    drain_timeout_s: float = Field(default=5.0, ge=0)
    memory_buffer_events: int = Field(
        default=10_000, ge=1, le=1_000_000, description="events held in memory while the outbox cannot store"
    )
    sinks: list[SinkConfig] = Field(default_factory=list)
    clip: ClipConfig = Field(default_factory=lambda: ClipConfig())

    @field_validator("sinks")
    @classmethod
    def _unique_names(cls, sinks: list[SinkConfig]) -> list[SinkConfig]:
        seen: set[str] = set()
        for sink in sinks:
            if sink.name in seen:
                raise ValueError(f"sink name {sink.name!r} is used twice; give each sink its own name")
            seen.add(sink.name)
        return sinks
