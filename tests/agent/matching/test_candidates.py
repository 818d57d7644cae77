"""The one candidate queue: priority (severity, then score), one entry per incident, the least
urgent dropped when full, pending keys; and the dispatcher without a stage."""

from __future__ import annotations

import threading
import time

import numpy as np

from agent.matching.candidates import CandidateQueue, DecisionDispatcher
from agent.types import Candidate


def candidate(track_id: int, score: float, query_id: int = 1, severity: str = "warning") -> Candidate:
    return Candidate(
        camera_id="cam",
        track_id=track_id,
        query_id=query_id,
        query_text="a person falling down",
        score=score,
        cosine=0.3,
        wall_time=float(track_id),
        frame_index=track_id,
        box=(0.0, 0.0, 10.0, 20.0),
        frame=np.zeros((32, 32, 3), np.uint8),
        severity=severity,
    )


class Collector:
    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None) -> None:
        self.seen: list[tuple[int, int]] = []
        self.gate = gate
        self.fail_on = fail_on

    def submit(self, item: Candidate, *, opens: bool = True) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        if item.track_id == self.fail_on:
            raise RuntimeError("sink exploded")
        self.seen.append((item.query_id, item.track_id))


def test_full_queue_drops_the_least_urgent_and_a_newer_candidate_replaces_its_incident() -> None:
    queue = CandidateQueue(maxsize=3)
    assert queue.put(candidate(1, 0.9, query_id=1))
    assert queue.put(candidate(2, 0.5, query_id=2, severity="critical"))
    assert queue.put(candidate(3, 0.7, query_id=3))
    assert queue.put(candidate(4, 0.8, query_id=4))  # drops query 3 (warning, 0.7)
    assert not queue.put(candidate(5, 0.1, query_id=5, severity="info"))  # the least urgent itself
    assert queue.put(candidate(6, 0.95, query_id=1))  # the same incident (cam, query 1): replaces
    stats = queue.snapshot_stats()
    assert (stats.put, stats.dropped, stats.replaced, stats.queued) == (6, 2, 1, 3)
    assert queue.pending() == {("cam", 2, 2), ("cam", 1, 6), ("cam", 4, 4)}
    sink = Collector()
    dispatcher = DecisionDispatcher(queue, sink)
    assert dispatcher.wait_idle(5.0)
    dispatcher.close(timeout_s=5)
    assert set(sink.seen) == {(2, 2), (1, 6), (4, 4)}
    assert queue.pending() == frozenset()


def test_dispatcher_drains_on_close_and_survives_a_failing_sink() -> None:
    queue = CandidateQueue(maxsize=100)
    release = threading.Event()
    sink = Collector(gate=release, fail_on=1)
    dispatcher = DecisionDispatcher(queue, sink)
    queue.put_window([candidate(i, 0.5, query_id=i) for i in range(10)], [])
    time.sleep(0.05)
    release.set()
    dispatcher.close(timeout_s=5)
    assert sorted(sink.seen) == [(i, i) for i in range(10) if i != 1]


def test_an_incident_keeps_at_most_top_k_waiting_and_a_person_once() -> None:
    queue = CandidateQueue(maxsize=10, per_incident=2)
    queue.put(candidate(1, 0.5))
    queue.put(candidate(2, 0.6))
    queue.put(candidate(1, 0.4))  # person 1 again: replaces its own entry
    queue.put(candidate(3, 0.7))  # a third person of a full incident: replaces the lowest (person 1)
    queue.put(candidate(4, 0.9, query_id=2))  # another incident
    assert queue.pending() == {("cam", 1, 2), ("cam", 1, 3), ("cam", 2, 4)}
    assert queue.snapshot_stats().replaced == 2
