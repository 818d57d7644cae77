"""The ``search:`` section of the agent config."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agent.config_rules import StrictConfigModel


class SearchConfig(StrictConfigModel):
    """Recent tracks kept for search and for trying a query before saving it.

    ``directory`` defaults to ``search/`` beside the state database.
    """

    enabled: bool = True
    directory: Path | None = None
    retention_hours: float = Field(24.0, gt=0, le=24 * 90, description="tracks older than this are pruned")
    max_tracks: int = Field(20000, ge=1, le=10_000_000, description="newest tracks kept (bounds disk use)")
    samples_per_track: int = Field(
        4, ge=1, le=32, description="crop embeddings kept per track (largest boxes)"
    )
    thumbnail_height: int = Field(128, ge=32, le=512, description="pixels")
    flush_interval_s: float = Field(2.0, gt=0, le=60, description="how often new samples are written")

    def index_directory(self, database: Path) -> Path:
        """Where the index lives: ``directory``, else ``search/`` beside the state ``database``."""
        return self.directory or database.parent / "search"
