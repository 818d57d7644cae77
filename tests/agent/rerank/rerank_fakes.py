"""Helpers shared by the re-ranker tests: a scripted LMM backend (a test double) and candidates."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from agent.rerank.backends.base import LmmBackend, LmmError, LmmRequest, LmmResponse
from agent.types import Candidate


class ScriptedBackend(LmmBackend):
    """A test double for an LMM: answers each request with ``answer(request)``, after ``delay_s``.

    Records the wall time (``time.monotonic``) at which each request started, and raises
    :class:`LmmError` for requests while ``fail`` is set.
    """

    name = "scripted"

    def __init__(
        self,
        answer: Callable[[LmmRequest], LmmResponse] | None = None,
        delay_s: float = 0.0,
        max_batch_size: int = 1,
    ) -> None:
        self.answer = answer or (lambda request: LmmResponse('{"blanks": {}, "verdict": "yes"}'))
        self.delay_s = delay_s
        self.max_batch_size = max_batch_size
        self.requests: list[LmmRequest] = []
        self.call_times: list[float] = []
        self.batch_sizes: list[int] = []
        self.fail = False
        self.closed = False
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[LmmRequest]) -> list[LmmResponse]:
        self._gate(len(requests))  # like the real backends: the budget's tokens, before the model
        with self._lock:
            now = time.monotonic()
            self.requests.extend(requests)
            self.call_times.extend([now] * len(requests))
            self.batch_sizes.append(len(requests))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise LmmError("scripted failure")
        return [self.answer(request) for request in requests]

    def close(self) -> None:
        self.closed = True


def make_candidate(
    score: float = 0.6,
    track_id: int = 1,
    query_text: str = "a man in a red jacket falls off his bicycle",
    query_id: int = 1,
    camera_id: str = "cam",
) -> Candidate:
    """A candidate on a 120x160 frame whose box holds a red block (the "person")."""
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[30:90, 60:100] = (0, 0, 255)
    return Candidate(
        camera_id=camera_id,
        track_id=track_id,
        query_id=query_id,
        query_text=query_text,
        score=score,
        cosine=0.3,
        wall_time=time.time(),
        frame_index=0,
        box=(60.0, 30.0, 100.0, 90.0),
        frame=frame,
    )
