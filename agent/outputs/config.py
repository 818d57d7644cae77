"""Configuration of the runner's per-frame outputs (``output:``): JSON lines and annotated video."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agent.config_rules import StrictConfigModel


class OutputConfig(StrictConfigModel):
    jsonl: Path | None = Field(None, description="one JSON line per analysed frame per camera")
    video_dir: Path | None = Field(None, description="annotated MP4 per camera")
    status_interval_s: float = Field(1.0, gt=0)
