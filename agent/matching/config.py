"""Configuration of standing-query matching (the ``matching:`` section of the agent config)."""

from __future__ import annotations

from pydantic import Field, field_validator

from agent.config_rules import StrictConfigModel
from agent.embedding.config import EmbedderConfig

DEFAULT_NORMAL_PROMPTS = [
    "a person walking",
    "a person standing",
    "a person sitting",
    "people walking on a street",
]

# Prompt ensemble, as in CLIP zero-shot classification: a query's embedding is the normalised mean
# of the embeddings of the query text in each template.
DEFAULT_TEMPLATES = [
    "{}",
    "a photo of {}.",
    "a CCTV image of {}.",
    "a surveillance camera frame showing {}.",
]


class MatchingConfig(StrictConfigModel):
    """How tracks are embedded and scored against the standing queries.

    ``embedder`` names a directory made by ``watchword export clip`` and the engine that runs it
    (crop padding and batch size are set there); without it, queries are not evaluated (detection
    and tracking still run).
    """

    embedder: EmbedderConfig | None = Field(None, description="the exported CLIP and its engine")
    embed_interval_s: float = Field(1.0, gt=0, description="re-embed each track this often, seconds")
    shape_change: float = Field(0.3, gt=0, description="re-embed sooner when box aspect changes this much")
    history: int = Field(16, ge=1, le=1024, description="embeddings kept per track")
    templates: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMPLATES), min_length=1)
    normal_prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_NORMAL_PROMPTS), min_length=1)
    default_threshold: float = Field(0.6, gt=0, lt=1, description="for queries with automatic threshold")
    exit_margin: float = Field(0.1, ge=0, lt=1, description="hysteresis: exit below threshold - margin")
    ema_alpha: float = Field(0.3, gt=0, le=1)
    pool_window_s: float = Field(10.0, gt=0, description="the moving average's maximum is taken over this, s")
    window_s: float = Field(2.0, gt=0, description="candidates are chosen once per window, seconds")
    top_k: int = Field(
        1, ge=1, le=100, description="candidates per (camera, query) and window: the incident's best tracks"
    )
    candidate_queue: int = Field(
        32, ge=1, le=10000, description="candidates waiting for the re-ranker and the alerts (one queue)"
    )
    rejection_cooldown_s: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="a person the LMM rejected is not sent again for that query for this long, media s",
    )
    rejection_margin: float = Field(
        0.1, ge=0, le=1, description="... unless their pooled score rose this much above the rejected one"
    )
    select_on_entry: bool = Field(
        True,
        description="a pair that becomes active selects its camera's candidates at once, not at the "
        "next window boundary",
    )
    refresh_s: float = Field(0.25, gt=0, le=1, description="how often the query registry is checked")

    @field_validator("templates")
    @classmethod
    def _templates_have_slot(cls, templates: list[str]) -> list[str]:
        for template in templates:
            if template.count("{}") != 1:
                raise ValueError(f"template {template!r} must contain exactly one {{}}")
        return templates
