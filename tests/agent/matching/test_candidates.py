"""The bounded candidate queue: lowest (then oldest) dropped and counted; the dispatcher drains it."""

from __future__ import annotations

import threading
import time

import numpy as np

from agent.matching.candidates import CandidateDispatcher, CandidateQueue
from agent.types import Candidate


def candidate(track_id: int, score: float) -> Candidate:
    return Candidate(
        camera_id="cam",
        track_id=track_id,
        query_id=1,
        query_text="a person falling down",
        score=score,
        cosine=0.3,
        wall_time=float(track_id),
        frame_index=track_id,
        box=(0.0, 0.0, 10.0, 20.0),
        frame=np.zeros((32, 32, 3), np.uint8),
    )


def test_full_queue_drops_the_lowest_then_the_oldest() -> None:
    queue = CandidateQueue(maxsize=3)
    for track_id, score in [(1, 0.9), (2, 0.5), (3, 0.7), (4, 0.8)]:
        queue.put(candidate(track_id, score))
    assert queue.dropped == 1 and len(queue) == 3
    assert [queue.get(0).track_id for _ in range(3)] == [1, 3, 4]  # type: ignore[union-attr]
    for track_id in (5, 6, 7, 8):
        queue.put(candidate(track_id, 0.6))
    assert queue.dropped == 2
    assert [queue.get(0).track_id for _ in range(3)] == [6, 7, 8]  # type: ignore[union-attr]
    assert queue.get(0.01) is None


def test_dispatcher_hands_over_in_order_and_drains_on_close() -> None:
    queue = CandidateQueue(maxsize=100)
    seen: list[int] = []
    release = threading.Event()

    def consume(item: Candidate) -> None:
        release.wait(5)
        seen.append(item.track_id)

    dispatcher = CandidateDispatcher(queue, consume)
    queue.put_many([candidate(i, 0.5) for i in range(10)])
    time.sleep(0.05)
    release.set()
    dispatcher.close(timeout_s=5)
    assert seen == list(range(10))


def test_a_failing_consumer_does_not_stop_the_dispatcher() -> None:
    queue = CandidateQueue(maxsize=10)
    seen: list[int] = []

    def consume(item: Candidate) -> None:
        if item.track_id == 1:
            raise RuntimeError("sink exploded")
        seen.append(item.track_id)

    dispatcher = CandidateDispatcher(queue, consume)
    queue.put_many([candidate(i, 0.5) for i in range(3)])
    dispatcher.close(timeout_s=5)
    assert seen == [0, 2]
