"""The agent's configuration: pydantic models loaded from YAML with ``${ENV_VAR}`` interpolation.

This module assembles the sections; each section's model lives beside the code it configures
(``agent/sources/config.py`` for cameras, ``agent/detection/config.py``, ``agent/tracking/config.py``,
``agent/outputs/config.py``, ``agent/matching/config.py``, ``agent/alerts/config.py``, ...).
Every model is a :class:`agent.config_rules.StrictConfigModel` (unknown keys, infinities, NaN and
YAML booleans given for numbers refused). Pluggable parts (detector, tracker) are chosen by a
``type`` field. :func:`load_config` goes through the one YAML loader (:mod:`agent.config_yaml`) and
raises :class:`ConfigError`, whose message names the YAML path of each bad key (``cameras[1].uri``),
its line in the file, and why it is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.alerts.config import AlertsConfig
from agent.api.config import ApiConfig
from agent.config_rules import StrictConfigModel
from agent.config_yaml import ConfigError as ConfigError  # re-exported for the commands
from agent.config_yaml import parse_yaml_model
from agent.detection.config import DetectorConfig, SSDDetectorConfig
from agent.fleet.config import FleetConfig
from agent.fleet.subjects import SITE_ID
from agent.matching.config import MatchingConfig
from agent.matching.exemplars import FeedbackConfig
from agent.outputs.config import OutputConfig
from agent.pose.config import PoseConfig
from agent.queries.startup import StartupQuery
from agent.rerank.config import RerankConfig
from agent.search.config import SearchConfig
from agent.sources.config import CameraConfig
from agent.tracking.config import ByteTrackConfig, TrackerConfig

STATE_DIR_ENV = "WATCHWORD_STATE_DIR"


def default_state_dir() -> Path:
    """``$WATCHWORD_STATE_DIR`` (the container images set ``/data``, their volume), else ``data``."""
    return Path(os.environ.get(STATE_DIR_ENV, "").strip() or "data")


class AgentConfig(StrictConfigModel):
    site: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    state_dir: Path = Field(
        default_factory=lambda: default_state_dir(),
        description="all state (queries, alerts, outbox, evidence) lives here unless a path is set "
        "explicitly; locked by the running agent",
    )
    database: Path = Field(
        Path("data/watchword.db"), description="SQLite file of the standing-query registry"
    )
    cameras: list[CameraConfig] = Field(min_length=1)
    detector: DetectorConfig = SSDDetectorConfig(type="ssd-mobilenet")
    tracker: TrackerConfig = ByteTrackConfig(type="bytetrack")
    output: OutputConfig = OutputConfig()
    matching: MatchingConfig = MatchingConfig()
    rerank: RerankConfig = RerankConfig()
    # per-track pose and behaviour cues (None: off); cue-mapped queries work without CLIP
    pose: PoseConfig | None = None
    # standing queries registered at start when no query has the same text (the demo's)
    queries: list[StartupQuery] = Field(default_factory=list)
    alerts: AlertsConfig = AlertsConfig()
    api: ApiConfig = ApiConfig()
    search: SearchConfig = SearchConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    # the fleet link (agent/fleet): the site's NATS leaf node; None: a stand-alone agent
    fleet: FleetConfig | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _paths_under_state_dir(cls, data: Any) -> Any:
        """``database``, ``alerts.database`` and ``alerts.evidence_dir`` default to files of ``state_dir``."""
        if not isinstance(data, dict):
            return data
        state_dir = data.get("state_dir", default_state_dir())
        if not isinstance(state_dir, str | Path) or not str(state_dir).strip():
            return data  # the field's own validation reports it
        root = Path(state_dir)
        data = {**data}
        data.setdefault("database", root / "watchword.db")
        alerts = data.get("alerts", {})
        if isinstance(alerts, dict):
            alerts = {**alerts}
            alerts.setdefault("database", root / "alerts.db")
            alerts.setdefault("evidence_dir", root / "evidence")
            data["alerts"] = alerts
        return data

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for camera in cameras:
            if camera.id in seen:
                raise ValueError(f"camera id {camera.id!r} is used twice")
            seen.add(camera.id)
        return cameras

    @model_validator(mode="before")
    @classmethod
    def _fleet_lmm_connection(cls, data: Any) -> Any:
        """``rerank.backend: {type: fleet}`` takes the ``fleet:`` section's server, credentials and site."""
        if not isinstance(data, dict) or not isinstance(data.get("fleet"), dict):
            return data
        rerank = data.get("rerank")
        if not isinstance(rerank, dict):
            return data
        backend = rerank.get("backend")
        if not isinstance(backend, dict) or backend.get("type") != "fleet":
            return data
        fleet = data["fleet"]
        inherited = {
            k: fleet[k] for k in ("url", "user", "password", "token", "creds_file", "tls") if k in fleet
        }
        if not any(k in backend for k in ("user", "token", "creds_file")):
            backend = {**inherited, **backend}
        else:
            backend = {**{k: v for k, v in inherited.items() if k in ("url", "tls")}, **backend}
        backend.setdefault("site", fleet.get("site", data.get("site")))
        return {**data, "rerank": {**rerank, "backend": backend}}

    @model_validator(mode="after")
    def _fleet_site(self) -> AgentConfig:
        if self.fleet is not None and self.fleet.site is None and re.match(SITE_ID, self.site) is None:
            raise ValueError(
                f"fleet.site is needed: the agent's site {self.site!r} is not a fleet site id "
                "(letters, digits, _ and -, at most 32)"
            )
        if self.fleet is not None and any(sink.name == "fleet" for sink in self.alerts.sinks):
            raise ValueError("alerts.sinks has a sink named 'fleet', the fleet: section's own; rename it")
        return self

    @property
    def enabled_cameras(self) -> list[CameraConfig]:
        return [camera for camera in self.cameras if camera.enabled]


def parse_config(text: str, source: str = "<config>", *, check_files: bool = True) -> AgentConfig:
    """Validate an agent config YAML document; raise :class:`ConfigError` naming each bad key.

    ``check_files=False`` accepts file cameras whose file is missing (a replay that never opens them).
    """
    return parse_yaml_model(AgentConfig, text, source, context={"check_files": check_files})


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    return parse_config(text, str(path))
