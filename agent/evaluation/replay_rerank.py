"""The re-ranker in a frames replay: pixels read back from the recording, the call budget on the
replay's run clock, so a replay with the LMM decides the same way on every run.

The queue in front of the stage is the decision core's, as live (:mod:`agent.decision`); its
deadline runs on each candidate's own camera's media time. Frame records hold no pixels. When the
replay's config names a camera's recording (a file ``uri``) the candidate's frame is read back from
it at the sample's pts and scaled to the analysed size; a
candidate whose frame cannot be read is passed on unverified. Candidates wait as in the live queue:
one per (camera, query) incident, severity then score first, as many decided per media minute as
``rerank.calls_per_minute`` allows, dropped after ``rerank.deadline_s`` media seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from agent.config import AgentConfig
from agent.decision.core import RunClock
from agent.matching.stage import CandidateStage, Decision
from agent.rerank.reranker import RerankOutcome, UnverifiedReason, apply_outcome
from agent.sources.base import SourceError
from agent.sources.uri import parse_source_uri
from agent.types import Candidate

log = logging.getLogger(__name__)


class FramePixels:
    """Frames of each camera's recording, by pts (seconds), at the size they were analysed."""

    def __init__(self, config: AgentConfig) -> None:
        self.paths: dict[str, Path] = {}
        for camera in config.cameras:
            path = _file_of(camera.uri)
            if path is not None:
                self.paths[camera.id] = path
        self._captures: dict[str, cv2.VideoCapture] = {}

    def image(self, camera_id: str, pts_s: float | None, width: int, height: int) -> np.ndarray | None:
        path = self.paths.get(camera_id)
        if path is None or pts_s is None:
            return None
        capture = self._captures.get(camera_id)
        if capture is None:
            capture = self._captures[camera_id] = cv2.VideoCapture(str(path))
        capture.set(cv2.CAP_PROP_POS_MSEC, pts_s * 1000.0)
        ok, image = capture.read()
        if not ok or image is None:
            return None
        if (image.shape[1], image.shape[0]) != (width, height):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image)

    def close(self) -> None:
        for capture in self._captures.values():
            capture.release()
        self._captures.clear()


def _file_of(uri: str) -> Path | None:
    try:
        spec = parse_source_uri(uri)
    except SourceError:
        return None
    return spec.path if spec.kind == "file" and spec.path is not None and spec.path.is_file() else None


class PixelStage:
    """The stage with each candidate's frame read back from its recording first (see the module
    docstring); a candidate without pixels is passed on unverified (``error``: no frame)."""

    def __init__(
        self,
        stage: CandidateStage,
        pixels: FramePixels,
        frame_of: Callable[[str, int], tuple[float | None, int, int] | None],
    ) -> None:
        self.stage = stage
        self.pixels = pixels
        self.frame_of = frame_of  # (camera, track) -> (pts s, width, height) of its latest sample

    @property
    def deadline_s(self) -> float | None:
        return self.stage.deadline_s

    def capacity(self) -> int:
        return self.stage.capacity()

    def wait_s(self) -> float:
        return self.stage.wait_s()

    def decide(self, candidates: list[Candidate], queued_s: list[float]) -> list[Decision]:
        with_pixels: list[tuple[Candidate, float]] = []
        decisions: dict[int, Decision] = {}
        for candidate, waited in zip(candidates, queued_s, strict=True):
            where = self.frame_of(candidate.camera_id, candidate.track_id)
            image = None if where is None else self.pixels.image(candidate.camera_id, *where)
            if image is None:
                outcome = RerankOutcome.unverified(
                    candidate.score, UnverifiedReason.ERROR, "no frame: the recording could not be read"
                )
                outcome.rationale["query"] = candidate.query_text
                apply_outcome(candidate, outcome)
                decisions[id(candidate)] = Decision(candidate, None, waited, 0.0)
            else:
                candidate.frame = image
                with_pixels.append((candidate, waited))
        if with_pixels:
            decided = self.stage.decide([c for c, _ in with_pixels], [w for _, w in with_pixels])
            decisions.update({id(d.candidate): d for d in decided})
        return [decisions[id(c)] for c in candidates]

    def expire(self, candidates: list[Candidate], queued_s: list[float]) -> list[Decision]:
        return self.stage.expire(candidates, queued_s)

    def overflow(self, candidates: list[Candidate], queued_s: list[float]) -> list[Decision]:
        return self.stage.overflow(candidates, queued_s)

    def close(self, timeout_s: float) -> None:
        self.stage.close(timeout_s)


class OpenedVerifier:
    """The re-ranking stage of a config for a replay, its budget on :attr:`run_clock`, with what it
    loaded (closed by :meth:`close`)."""

    def __init__(self, config: AgentConfig) -> None:
        from agent.embedding import ClipEncoder
        from agent.rerank.backends.base import build_backend
        from agent.rerank.service import RerankService

        assert config.rerank.backend is not None
        self.encoder = ClipEncoder.from_config(config.matching.embedder) if config.matching.embedder else None
        self.backend = build_backend(config.rerank.backend)
        embed_texts = self.encoder.embed_texts if self.encoder is not None else None
        rerank = config.rerank
        if rerank.cloze_scheme == "two_step" and rerank.effective_burst < 2:
            # Media time stands still during a call: the verdict request must not wait for a refill.
            log.info("replay: rerank.burst raised to 2 so that a candidate's two requests go out together")
            rerank = rerank.model_copy(update={"burst": 2})
        self.run_clock = RunClock()
        self.stage = RerankService(rerank, self.backend, embed_texts, clock=self.run_clock)
        self.pixels = FramePixels(config)
        if not self.pixels.paths:
            log.warning("no camera of the config names a recording: candidates pass on unverified")

    def close(self) -> None:
        self.pixels.close()
        self.backend.close()
        if self.encoder is not None:
            self.encoder.close()
