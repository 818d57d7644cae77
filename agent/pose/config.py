"""Configuration of per-track pose and behaviour cues (the ``pose:`` section of the agent config)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from agent.config_rules import StrictConfigModel


class CueParams(StrictConfigModel):
    """Thresholds and speeds of the behaviour cues; each cue is a logistic of one measurement.

    A camera's view angle changes how fast a body moves in pixels and how tilted a standing torso
    looks, so every field can be overridden per camera (``pose.cameras.<id>``).
    """

    keypoint_score: float = Field(0.25, ge=0, le=1, description="keypoints below this score are ignored")
    lying_angle_deg: float = Field(55.0, gt=0, lt=90, description="torso angle from vertical at lying=0.5")
    angle_scale_deg: float = Field(8.0, gt=0, description="softness of the torso-angle logistic, degrees")
    lying_aspect: float = Field(
        1.1, gt=0, description="box width/height at lying=0.5 when keypoints are weak"
    )
    crouch_ratio: float = Field(0.9, gt=0, description="hip-to-ankle height / torso length at crouching=0.5")
    running_speed: float = Field(1.4, gt=0, description="body heights per second at running=0.5")
    speed_window_s: float = Field(1.0, gt=0, description="speed is measured over this much media time")
    still_speed: float = Field(0.15, gt=0, description="below this many body heights/s a person is still")
    still_long_s: float = Field(20.0, gt=0, description="seconds still at still_long=0.5")
    max_gap_s: float = Field(
        1.0,
        gt=0,
        description="a track unseen longer than this (media seconds) starts its stillness again; shorter"
        " gaps are detector misses (0.6 s on a man standing in the sample video), moves across them"
        " are measured by the speed",
    )
    fall_drop_speed: float = Field(0.6, gt=0, description="hip drop, body heights/s, at fall=0.5")
    fall_window_s: float = Field(2.0, gt=0, description="a drop this recent followed by lying is a fall")
    ground_long_s: float = Field(10.0, gt=0, description="seconds lying at ground_long=0.5")
    arms_margin: float = Field(0.15, description="wrist above shoulder, in torso lengths, at arms_raised=0.5")
    wrist_score: float = Field(
        0.4, ge=0, le=1, description="arms_raised reads only wrists this confident (small wrists are noisy)"
    )


class PoseConfig(StrictConfigModel):
    """MoveNet pose per track, behaviour cues, and how cue scores join the standing-query scores.

    Without a CLIP embedder, queries that map to a cue are scored from the cue alone; with one, the
    cue score is fused with the calibrated CLIP score: ``(1 - cue_weight) * clip + cue_weight * cue``,
    the cue weight scaled by the mapping's confidence.
    """

    enabled: bool = Field(True, description="run pose and cues on every track")
    model_dir: Path | None = Field(
        None, description="made by `watchword export pose`; None: <state_dir>/models/pose"
    )
    export_if_missing: bool = Field(
        True, description="convert the packaged MoveNet into model_dir at start when it has no manifest"
    )
    providers: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1)
    intra_op_threads: int | None = Field(None, ge=1, le=64)
    interval_s: float = Field(0.5, gt=0, description="pose each track this often (media time), seconds")
    shape_change: float = Field(0.3, gt=0, description="sooner when the box aspect changes this much")
    min_interval_s: float = Field(
        0.3, ge=0, description="... but never sooner than this after the last sample (box jitter)"
    )
    max_batch: int = Field(16, ge=1, le=256, description="crops per engine call")
    crop_padding: float = Field(0.15, ge=0, le=1, description="context around the box, fraction of its size")
    history: int = Field(64, ge=4, le=4096, description="cue samples kept per track (evidence history)")
    cues: CueParams = Field(default_factory=CueParams)
    cameras: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="per-camera overrides of some cue parameters"
    )
    min_similarity: float = Field(0.5, gt=0, lt=1, description="query-to-cue mapping: least similarity")
    min_margin: float = Field(0.05, ge=0, lt=1, description="... and margin over ordinary behaviour")
    cue_weight: float = Field(0.5, ge=0, le=1, description="weight of the cue score fused with CLIP's")
    score_interval_s: float = Field(
        0.2, gt=0, description="without CLIP: a track's cues are pooled into its query scores this often"
    )

    @model_validator(mode="after")
    def _providers_known(self) -> PoseConfig:
        unknown = [p for p in self.providers if p not in ("cpu", "cuda", "tensorrt")]
        if unknown:
            raise ValueError(f"unknown providers {unknown}: choose from cpu, cuda, tensorrt")
        for camera_id in self.cameras:
            self.params_for(camera_id)  # a bad key or value fails at start, naming the camera
        return self

    def params_for(self, camera_id: str) -> CueParams:
        """The cue parameters of a camera: the defaults with that camera's overrides."""
        override = self.cameras.get(camera_id)
        if not override:
            return self.cues
        try:
            return CueParams.model_validate({**self.cues.model_dump(), **override})
        except ValueError as exc:
            raise ValueError(f"pose.cameras.{camera_id}: {exc}") from exc
