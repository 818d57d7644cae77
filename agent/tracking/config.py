"""Configuration of the tracker (``tracker:``): ByteTrack or BoT-SORT, chosen by ``type``, and the
re-association of new tracks with recently lost people."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from agent.config_rules import StrictConfigModel


class ReassociationConfig(StrictConfigModel):
    """Re-association of a new track with a recently lost person (agent/tracking/reassociation.py)."""

    enabled: bool = True
    max_gap_s: float = Field(6.0, gt=0, le=60, description="media seconds a lost person can take a new track")
    max_distance: float = Field(1.0, gt=0, le=10, description="gate radius, in box heights")
    min_similarity: float = Field(0.8, ge=0, le=1, description="colour-histogram similarity, 0..1")
    max_size_change: float = Field(2.0, ge=1, description="largest ratio of the two box heights")
    min_embedding_similarity: float = Field(0.85, ge=-1, le=1, description="embedding cosine (CLIP hook)")
    decision_window_s: float = Field(
        1.5, ge=0, le=5, description="media seconds a doubtful new track is held back and compared again"
    )
    appearance: Literal["colour", "clip"] = Field(
        "colour", description="clip: compare crops with the matcher's CLIP encoder (matching.embedder)"
    )


class _TrackerBase(StrictConfigModel):
    track_high_thresh: float = Field(0.25, ge=0, le=1)
    track_low_thresh: float = Field(0.1, ge=0, le=1)
    new_track_thresh: float = Field(0.25, ge=0, le=1)
    track_buffer: int = Field(
        30,
        ge=1,
        description="frames a lost track is kept, counted at 30 frames/s (scaled to the camera's rate)",
    )
    match_thresh: float = Field(0.8, gt=0, le=1)
    fuse_score: bool = True
    reassociation: ReassociationConfig = ReassociationConfig()

    @model_validator(mode="after")
    def _low_below_high(self) -> _TrackerBase:
        if self.track_low_thresh > self.track_high_thresh:
            raise ValueError("track_low_thresh must not exceed track_high_thresh")
        return self


class ByteTrackConfig(_TrackerBase):
    type: Literal["bytetrack"]


class BotSortConfig(_TrackerBase):
    type: Literal["botsort"]
    gmc_method: Literal["sparseOptFlow", "orb", "sift", "ecc", "none"] = "sparseOptFlow"

    @model_validator(mode="before")
    @classmethod
    def _no_reid_gates(cls, data: Any) -> Any:
        retired = sorted(
            {"proximity_thresh", "appearance_thresh"} & set(data if isinstance(data, dict) else ())
        )
        if retired:
            raise ValueError(
                f"{', '.join(retired)}: ultralytics' ReID gates, unused without a ReID model and no longer "
                "accepted; remove them (appearance is matched by tracker.reassociation)"
            )
        return data


TrackerConfig = Annotated[ByteTrackConfig | BotSortConfig, Field(discriminator="type")]
