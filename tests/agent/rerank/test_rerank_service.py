"""The call budget and the asynchronous service: rate cap, bounded queue, deadlines, never blocking."""

from __future__ import annotations

import threading
import time

import pytest
from rerank_fakes import ScriptedBackend, make_candidate

from agent.rerank.budget import CallBudget
from agent.rerank.config import RerankConfig
from agent.rerank.service import RerankResult, RerankService


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_never_exceeds_the_cap_in_any_minute() -> None:
    clock = FakeClock()
    budget = CallBudget(calls_per_minute=10, burst=4, clock=clock)
    starts: list[float] = []
    for _ in range(3000):  # 300 s in 0.1 s steps, taking every call allowed
        available = budget.available()
        if available:
            budget.take(available)
            starts.extend([clock.now] * available)
        clock.now += 0.1
    assert len(starts) >= 48  # about 10 a minute over 5 minutes (plus the first burst)
    for first in starts:
        in_window = sum(1 for t in starts if first <= t < first + 60.0)
        assert in_window <= 10
    assert starts[:4] == [1000.0] * 4  # the bucket starts full: one burst at once


def test_budget_wait_and_take_agree() -> None:
    clock = FakeClock()
    budget = CallBudget(calls_per_minute=6, burst=1, clock=clock)  # one every 10 s
    assert budget.wait_s() == 0.0 and budget.available() == 1
    budget.take(1)
    assert budget.available() == 0
    assert budget.wait_s() == pytest.approx(10.0)
    with pytest.raises(ValueError, match="allowed"):
        budget.take(1)
    clock.now += 10.0
    assert budget.available() == 1 and budget.calls_in_window() == 1
    clock.now += 60.0
    assert budget.calls_in_window() == 0


def _config(**overrides: object) -> RerankConfig:
    return RerankConfig.model_validate(overrides)


def test_calls_stay_within_budget_and_stale_candidates_are_skipped() -> None:
    """A backend taking 50 ms a call, 30 candidates, a budget of 4 calls/s and a 0.6 s deadline."""
    backend = ScriptedBackend(delay_s=0.05)
    results: list[RerankResult] = []
    config = _config(calls_per_minute=240, burst=1, queue_size=64, deadline_s=0.6)
    service = RerankService(config, backend, on_result=results.append)
    started = time.monotonic()
    for i in range(30):
        assert service.submit(make_candidate(score=0.5, track_id=i))
    submit_s = time.monotonic() - started
    assert service.wait_idle(timeout_s=10.0)
    elapsed = time.monotonic() - started
    service.close()
    stats = service.stats()

    assert submit_s < 0.5  # 30 submissions; waiting for the LMM would take at least 30 x 0.05 s
    assert stats.submitted == stats.accepted == 30
    assert stats.skipped_stale > 0
    assert stats.completed + stats.skipped_stale == 30
    assert stats.calls == stats.completed == len(results) == len(backend.requests)
    # 4 calls/s, one at a time: by t seconds after the first call, at most 1 + 4 t calls started
    starts = service.budget.recent_starts()
    assert len(starts) == stats.calls
    for index, at in enumerate(starts):
        assert index + 1 <= 1 + 4.0 * (at - starts[0]) + 1e-6
    assert stats.calls <= 1 + 4.0 * elapsed
    assert all(r.queued_s <= 0.6 + 0.3 for r in results)
    assert all(r.candidate.fused_score is not None for r in results)


def test_full_queue_drops_lowest_then_oldest_and_replaces_same_track() -> None:
    gate = threading.Event()
    backend = ScriptedBackend()
    backend.answer = lambda request: (gate.wait(5.0), ScriptedBackend().answer(request))[1]
    config = _config(calls_per_minute=6000, queue_size=3, deadline_s=30.0)
    processed: list[tuple[int, float]] = []
    service = RerankService(
        config, backend, on_result=lambda r: processed.append((r.candidate.track_id, r.candidate.score))
    )
    try:
        assert service.submit(make_candidate(score=0.9, track_id=100))  # taken by the worker at once
        deadline = time.monotonic() + 5.0
        while service.stats().in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert service.submit(make_candidate(score=0.5, track_id=1))
        assert service.submit(make_candidate(score=0.3, track_id=2))
        assert service.submit(make_candidate(score=0.3, track_id=3))
        assert not service.submit(make_candidate(score=0.1, track_id=4))  # lowest of a full queue
        assert service.submit(make_candidate(score=0.6, track_id=5))  # drops track 2 (0.3, the older)
        assert service.submit(make_candidate(score=0.8, track_id=1))  # replaces queued track 1
        stats = service.stats()
        assert (stats.submitted, stats.accepted, stats.replaced) == (7, 5, 1)
        assert (stats.dropped_new, stats.dropped_queued, stats.queued) == (1, 1, 3)
        gate.set()
        assert service.wait_idle(timeout_s=5.0)
    finally:
        gate.set()
        service.close()
    assert processed == [(100, 0.9), (1, 0.8), (5, 0.6), (3, 0.3)]
    stats = service.stats()
    assert stats.completed == 4 and stats.dropped == 2


def test_processing_order_is_highest_score_first() -> None:
    gate = threading.Event()
    order: list[float] = []
    backend = ScriptedBackend()
    service = RerankService(_config(calls_per_minute=6000, deadline_s=30.0), backend)
    service.on_result = lambda result: order.append(result.candidate.score)
    backend.answer = lambda request: (gate.wait(5.0), ScriptedBackend().answer(request))[1]
    try:
        service.submit(make_candidate(score=0.99, track_id=0))
        deadline = time.monotonic() + 5.0
        while service.stats().in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        for i, score in enumerate([0.2, 0.7, 0.4]):
            service.submit(make_candidate(score=score, track_id=i + 1))
        gate.set()
        assert service.wait_idle(timeout_s=5.0)
    finally:
        service.close()
    assert order == [0.99, 0.7, 0.4, 0.2]


def test_batches_follow_batch_size_and_backend_limit() -> None:
    backend = ScriptedBackend(delay_s=0.02, max_batch_size=4)
    config = _config(calls_per_minute=6000, batch_size=3, queue_size=32, deadline_s=30.0)
    gate = threading.Event()
    answer = backend.answer
    backend.answer = lambda request: (gate.wait(5.0), answer(request))[1]
    with RerankService(config, backend) as service:
        service.submit(make_candidate(track_id=99))
        deadline = time.monotonic() + 5.0
        while service.stats().in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        for i in range(7):
            service.submit(make_candidate(track_id=i))
        time.sleep(0.05)  # the token bucket refills to a full batch
        gate.set()
        assert service.wait_idle(timeout_s=5.0)
    assert backend.batch_sizes[0] == 1 and max(backend.batch_sizes) == 3 and sum(backend.batch_sizes) == 8


def test_failures_are_counted_and_reported_and_close_is_prompt() -> None:
    backend = ScriptedBackend()
    backend.fail = True
    results: list[RerankResult] = []
    service = RerankService(
        _config(calls_per_minute=6000, deadline_s=30.0), backend, on_result=results.append
    )
    service.submit(make_candidate())
    assert service.wait_idle(timeout_s=5.0)
    started = time.monotonic()
    service.close(timeout_s=2.0)
    assert time.monotonic() - started < 1.5
    stats = service.stats()
    assert stats.failed == 1 and stats.completed == 0 and stats.last_error == "scripted failure"
    assert results[0].outcome.error == "scripted failure" and results[0].candidate.fused_score is None
    assert not service.submit(make_candidate())  # closed
    assert not backend.closed  # not built by the service, so not closed by it


def test_close_discards_the_queue_and_counts_it() -> None:
    backend = ScriptedBackend(delay_s=0.3)
    service = RerankService(_config(calls_per_minute=6000, deadline_s=30.0), backend)
    for i in range(5):
        service.submit(make_candidate(track_id=i))
    deadline = time.monotonic() + 5.0
    while service.stats().in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    service.close(timeout_s=2.0)
    stats = service.stats()
    assert stats.discarded_at_close == 4 and stats.calls == 1
