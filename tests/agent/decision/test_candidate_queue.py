"""The one candidate queue: severity first, equal-severity incidents in turn, one entry per incident
(``top_k``), the least urgent dropped when full, deadlines on each camera's own clock."""

from __future__ import annotations

import numpy as np

from agent.decision.queue import CandidateQueue
from agent.types import Candidate


def candidate(
    track_id: int, score: float, query_id: int = 1, severity: str = "warning", camera: str = "cam"
) -> Candidate:
    return Candidate(
        camera_id=camera,
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


def test_full_queue_drops_the_least_urgent_and_a_newer_candidate_replaces_its_incident() -> None:
    queue = CandidateQueue(maxsize=3)
    assert queue.put(candidate(1, 0.9, query_id=1), 0.0) == []
    assert queue.put(candidate(2, 0.5, query_id=2, severity="critical"), 0.0) == []
    assert queue.put(candidate(3, 0.7, query_id=3), 0.0) == []
    dropped = queue.put(candidate(4, 0.8, query_id=4), 0.0)  # drops query 3 (warning, 0.7)
    assert [e.key for e in dropped] == [("cam", 3, 3)]
    dropped = queue.put(candidate(5, 0.1, query_id=5, severity="info"), 0.0)  # the least urgent itself
    assert [e.key for e in dropped] == [("cam", 5, 5)]
    assert queue.put(candidate(6, 0.95, query_id=1), 0.0) == []  # the same incident: replaces
    assert (queue.stats.put, queue.stats.dropped, queue.stats.replaced, len(queue)) == (6, 2, 1, 3)
    assert queue.pending() == {("cam", 2, 2), ("cam", 1, 6), ("cam", 4, 4)}
    assert [e.key for e in queue.take(3)] == [("cam", 2, 2), ("cam", 1, 6), ("cam", 4, 4)]


def test_an_incident_keeps_at_most_top_k_waiting_and_a_person_once() -> None:
    queue = CandidateQueue(maxsize=10, per_incident=2)
    queue.put(candidate(1, 0.5), 0.0)
    queue.put(candidate(2, 0.6), 0.0)
    queue.put(candidate(1, 0.4), 0.0)  # person 1 again: replaces its own entry
    queue.put(candidate(3, 0.7), 0.0)  # a third person of a full incident: replaces the lowest (person 1)
    queue.put(candidate(4, 0.9, query_id=2), 0.0)  # another incident
    assert queue.pending() == {("cam", 1, 2), ("cam", 1, 3), ("cam", 2, 4)}
    assert queue.stats.replaced == 2


def test_equal_severity_incidents_are_served_in_turn_whatever_their_scores() -> None:
    """On main the incident with the best score headed the queue every time it was put back."""
    queue = CandidateQueue(maxsize=10)
    served = []
    for _ in range(4):
        queue.put(candidate(1, 0.95, camera="gate"), 0.0)
        queue.put(candidate(7, 0.75, camera="dock"), 0.0)
        served += [e.candidate.camera_id for e in queue.take(1)]
    assert served[:2] == ["gate", "dock"] and served.count("dock") >= 2
    queue.put(candidate(9, 0.2, query_id=3, severity="critical", camera="dock"), 0.0)
    assert queue.take(1)[0].candidate.severity == "critical"  # severity still comes first


def test_the_deadline_runs_on_each_cameras_own_clock() -> None:
    """Two cameras whose media clocks have different origins: neither one's time expires the other's."""
    queue = CandidateQueue(maxsize=10)
    queue.put(candidate(1, 0.9, camera="a"), 1000.0)  # camera a's pts are around 1000 s
    queue.put(candidate(2, 0.9, query_id=2, camera="b"), 5.0)  # camera b's around 5 s
    assert queue.take_expired(30.0, {"a": 1010.0, "b": 20.0}) == []
    assert [e.key for e in queue.take_expired(30.0, {"a": 1031.0, "b": 20.0})] == [("a", 1, 1)]
    assert queue.stats.expired == 1 and queue.pending() == {("b", 2, 2)}
