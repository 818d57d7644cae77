"""The re-ranker in a frames replay: pixels read back from the recording, the call budget and the
deadline on media time, so a replay with the LMM decides the same way on every run.

Frame records hold no pixels. When the replay's config names a camera's recording (a file ``uri``)
the candidate's frame is read back from it at the record's pts and scaled to the analysed size; a
candidate whose frame cannot be read is passed on unverified. Candidates wait as in the live queue:
one per (camera, query) incident, severity then score first, as many decided per media minute as
``rerank.calls_per_minute`` allows, dropped after ``rerank.deadline_s`` media seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agent.config import AgentConfig
from agent.matching.selection import severity_rank
from agent.matching.stage import CandidateStage
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


@dataclass
class _Waiting:
    candidate: Candidate
    since_s: float


class MediaClock:
    """The replay's current media time, as the stage's clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ReplayVerifier:
    """The live candidate queue in front of the re-ranking stage, run on media time."""

    def __init__(self, stage: CandidateStage, clock: MediaClock) -> None:
        self.stage = stage
        self.clock = clock
        self._waiting: list[_Waiting] = []

    def pending(self) -> frozenset[tuple[str, int, int]]:
        return frozenset(
            (w.candidate.camera_id, w.candidate.query_id, w.candidate.track_id) for w in self._waiting
        )

    def put(self, candidate: Candidate) -> None:
        """Queue a candidate; a newer one of the same (camera, query) takes the older one's place."""
        incident = (candidate.camera_id, candidate.query_id)
        self._waiting = [
            w for w in self._waiting if (w.candidate.camera_id, w.candidate.query_id) != incident
        ]
        self._waiting.append(_Waiting(candidate, self.clock.now))

    def decided(self) -> list[Candidate]:
        """The candidates decided at the current media time: stale ones as the stage passes them on
        (``expire``), then as many as its budget allows."""
        deadline = self.stage.deadline_s
        now = self.clock.now
        done: list[Candidate] = []
        if deadline is not None:
            stale = [w for w in self._waiting if now - w.since_s > deadline]
            if stale:
                expired = self.stage.expire([w.candidate for w in stale], [now - w.since_s for w in stale])
                done += [d.candidate for d in expired]
                self._waiting = [w for w in self._waiting if w not in stale]
        while self._waiting:
            room = self.stage.capacity()
            if room <= 0:
                break
            self._waiting.sort(key=lambda w: (-severity_rank(w.candidate.severity), -w.candidate.score))
            batch, self._waiting = self._waiting[:room], self._waiting[room:]
            decisions = self.stage.decide([w.candidate for w in batch], [now - w.since_s for w in batch])
            done += [d.candidate for d in decisions]
        return done


class OpenedVerifier:
    """A :class:`ReplayVerifier` built from a config, with what it loaded (closed by :meth:`close`)."""

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
        clock = MediaClock()
        self.verifier = ReplayVerifier(RerankService(rerank, self.backend, embed_texts, clock=clock), clock)

    def close(self) -> None:
        self.backend.close()
        if self.encoder is not None:
            self.encoder.close()
