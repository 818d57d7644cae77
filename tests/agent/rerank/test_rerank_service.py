"""The call budget and the re-ranking stage behind the one candidate queue: rate cap, deadlines,
priority, batches, failures and close."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rerank_fakes import ScriptedBackend, make_candidate

from agent.alerts.config import AlertsConfig
from agent.decision.core import DecisionCore
from agent.decision.verifier import LmmWorker
from agent.matching.config import MatchingConfig
from agent.rerank.budget import CallBudget
from agent.rerank.config import RerankConfig
from agent.rerank.service import RerankService
from agent.types import Candidate


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


def test_acquire_waits_for_tokens_and_gives_up_on_a_stopped_clock_or_after_max_wait() -> None:
    budget = CallBudget(calls_per_minute=600, burst=2)  # one token every 0.1 s, real time
    started = time.monotonic()
    assert budget.acquire(4)  # two at once, then two more as the bucket refills
    assert 0.15 <= time.monotonic() - started < 2.0 and budget.calls_in_window() == 4
    slow = CallBudget(calls_per_minute=1, burst=1)
    assert slow.acquire(1)
    started = time.monotonic()
    assert not slow.acquire(1, max_wait_s=0.3)  # the next token is a minute away
    assert time.monotonic() - started < 1.5 and slow.calls_in_window() == 1
    frozen = FakeClock()  # a replay's media clock does not move while a request waits
    stuck = CallBudget(calls_per_minute=1, burst=1, clock=frozen)
    assert stuck.acquire(1) and not stuck.acquire(1)
    assert not CallBudget(60, clock=frozen).acquire(1, stop=lambda: True)


def _config(**overrides: object) -> RerankConfig:
    return RerankConfig.model_validate(overrides)


class Collector:
    """What the stage passed back, in order (the decision core's ``on_decision``)."""

    def __init__(self) -> None:
        self.candidates: list[Candidate] = []


@contextmanager
def wired(service: RerankService, queue_size: int = 64) -> Iterator[tuple[DecisionCore, Collector]]:
    """The live decision core in front of ``service`` (the LMM on its own thread, the queue's
    deadline on monotonic time); candidates are offered as windows would."""
    sink = Collector()
    core = DecisionCore(
        MatchingConfig(candidate_queue=queue_size),
        AlertsConfig(),
        lambda query_id: None,
        lambda events: None,
        verifier=LmmWorker(service),
        queue_clock=time.monotonic,
        on_decision=sink.candidates.append,
    )
    try:
        yield core, sink
    finally:
        core.finish(timeout_s=2.0)
        core.close(timeout_s=2.0)


def drain(core: DecisionCore, timeout_s: float) -> bool:
    """Apply decisions and serve the queue (what each record does) until it is empty and none is
    out (True), or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        core.pump()
        queue = core.stats().queue
        if queue.queued == 0 and queue.in_flight == 0:
            return True
        if not core.wait_idle(0.01):
            continue
        time.sleep(0.005)  # the budget refills: poll the queue again
    return False


def _wait_in_flight(service: RerankService) -> None:
    deadline = time.monotonic() + 5.0
    while service.stats().in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.005)


def test_calls_stay_within_budget_and_stale_candidates_are_skipped() -> None:
    """A backend taking 50 ms a call, 30 incidents, a budget of 4 requests/s and a 0.6 s deadline."""
    backend = ScriptedBackend(delay_s=0.05)
    service = RerankService(_config(calls_per_minute=240, burst=2, deadline_s=0.6), backend)
    with wired(service) as (core, sink):
        started = time.monotonic()
        for i in range(30):
            core.offer(make_candidate(score=0.5, track_id=i, query_id=i))
        put_s = time.monotonic() - started
        assert drain(core, timeout_s=10.0)
        elapsed = time.monotonic() - started
    stats, queued = service.stats(), core.stats().queue

    assert put_s < 0.5  # 30 offers; waiting for the LMM would take at least 30 x 0.05 s
    assert stats.skipped_stale == queued.expired > 0
    assert stats.completed + stats.skipped_stale == 30
    # every request takes a token: two turns per candidate
    assert stats.calls == len(backend.requests) == 2 * stats.completed
    # 4 requests/s, two back to back: by t seconds after the first, at most 2 + 4 t requests started
    starts = service.budget.recent_starts()
    assert len(starts) == stats.calls
    for index, at in enumerate(starts):
        assert index + 1 <= 2 + 4.0 * (at - starts[0]) + 1e-6
    assert stats.calls <= 2 + 4.0 * elapsed
    # the stale candidates are passed on too, unverified for the deadline, at their coarse score
    assert len(sink.candidates) == 30
    stale = [c for c in sink.candidates if c.verification_reason == "deadline"]
    answered = [c for c in sink.candidates if c.verification_reason != "deadline"]
    assert len(stale) == stats.skipped_stale and len(answered) == stats.completed
    assert all(c.verification == "unverified" and c.fused_score is None for c in stale)
    assert all(c.rationale and c.rationale["error"].startswith("not sent to the LMM") for c in stale)
    assert all(c.fused_score is not None for c in answered)


def test_processing_order_is_severity_then_score() -> None:
    gate = threading.Event()
    backend = ScriptedBackend()
    backend.answer = lambda request: (gate.wait(5.0), ScriptedBackend().answer(request))[1]
    service = RerankService(_config(calls_per_minute=6000, deadline_s=30.0), backend)
    with wired(service) as (core, sink):
        core.offer(make_candidate(score=0.99, query_id=100))
        _wait_in_flight(service)
        for i, (score, severity) in enumerate(
            [(0.2, "critical"), (0.9, "info"), (0.7, "warning"), (0.4, "critical")]
        ):
            candidate = make_candidate(score=score, query_id=i)
            candidate.severity = severity
            core.offer(candidate)
        gate.set()
        assert drain(core, timeout_s=5.0)
    assert [c.score for c in sink.candidates] == [0.99, 0.4, 0.2, 0.7, 0.9]


def test_an_open_waiting_for_the_budget_is_pending() -> None:
    backend = ScriptedBackend()
    # two requests a minute: the first candidate's two turns spend the budget
    service = RerankService(_config(calls_per_minute=2, burst=2, deadline_s=30.0), backend)
    with wired(service) as (core, sink):
        core.offer(make_candidate(query_id=1))
        assert not drain(core, timeout_s=0.5) or core.stats().queue.queued == 0
        core.offer(make_candidate(query_id=2))  # waits for the budget (a minute)
        core.pump()
        assert [c.query_id for c in sink.candidates] == [1]
        assert core.queue.pending() == {("cam", 2, 1)}, "the waiting open counts as pending"


def test_batches_follow_batch_size_and_backend_limit() -> None:
    backend = ScriptedBackend(delay_s=0.02, max_batch_size=4)
    config = _config(calls_per_minute=6000, batch_size=3, deadline_s=30.0)
    gate = threading.Event()
    answer = backend.answer
    backend.answer = lambda request: (gate.wait(5.0), answer(request))[1]
    service = RerankService(config, backend)
    with wired(service) as (core, _):
        core.offer(make_candidate(query_id=99))
        _wait_in_flight(service)
        for i in range(7):
            core.offer(make_candidate(query_id=i))
        time.sleep(0.05)  # the token bucket refills to a full batch
        gate.set()
        assert drain(core, timeout_s=5.0)
    # each batch goes twice (cloze turn, verdict turn)
    sizes = backend.batch_sizes
    assert sizes[:2] == [1, 1] and max(sizes) == 3 and sum(sizes) == 16


def test_failures_are_counted_and_passed_on_and_close_is_prompt() -> None:
    backend = ScriptedBackend()
    backend.fail = True
    service = RerankService(_config(calls_per_minute=6000, deadline_s=30.0), backend)
    with wired(service) as (core, sink):
        core.offer(make_candidate())
        assert drain(core, timeout_s=5.0)
        started = time.monotonic()
    assert time.monotonic() - started < 1.5
    stats = service.stats()
    assert stats.failed == 1 and stats.completed == 0 and stats.last_error == "scripted failure"
    assert len(sink.candidates) == 1 and sink.candidates[0].fused_score is None
    assert core.stats().failed == 1
    assert not backend.closed  # not built by the service, so not closed by it


def test_close_discards_waiting_candidates_and_counts_them() -> None:
    backend = ScriptedBackend(delay_s=0.3)
    service = RerankService(_config(calls_per_minute=6000, deadline_s=30.0), backend)
    with wired(service) as (core, _):
        for i in range(5):
            core.offer(make_candidate(query_id=i))
        _wait_in_flight(service)
    # the candidate in flight finishes both its turns; the four waiting never reach the LMM
    assert core.stats().discarded == 4 and service.stats().calls == 2


def test_a_candidate_dropped_from_a_full_queue_is_passed_on_unverified_for_budget() -> None:
    gate = threading.Event()
    backend = ScriptedBackend()
    backend.answer = lambda request: (gate.wait(5.0), ScriptedBackend().answer(request))[1]
    service = RerankService(_config(calls_per_minute=6000, deadline_s=30.0), backend)
    with wired(service, queue_size=2) as (core, sink):
        core.offer(make_candidate(score=0.99, query_id=100))
        _wait_in_flight(service)
        for i, score in enumerate([0.5, 0.6, 0.7]):  # the queue holds two: the 0.5 one is dropped
            core.offer(make_candidate(score=score, query_id=i))
        gate.set()
        assert drain(core, timeout_s=5.0)
    dropped = [c for c in sink.candidates if c.score == 0.5]
    assert len(dropped) == 1 and dropped[0].verification == "unverified"
    assert dropped[0].verification_reason == "budget"
    assert core.stats().overflow == 1
