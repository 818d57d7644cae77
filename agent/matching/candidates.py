"""The one priority queue and the one thread between the matcher and the alert manager.

The matcher puts each window's selection here: candidates that may open an alert ("opens") and
candidates that update an open episode ("updates"). The dispatcher's thread takes updates at once
(they need no stage) and opens in priority order, severity first, then score, as many as the stage
(the LMM re-ranker, when configured) has room for under its budget; every decision goes to the
alert manager. While a candidate is queued or in flight its (camera, query, track) is *pending*, and
candidate selection treats it as already alerting, so a slow LMM never makes the same person a
candidate twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.api.metrics import Metric
from agent.matching.selection import severity_rank
from agent.matching.stage import CandidateStage, Decision, DecisionSink
from agent.types import Candidate

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.5
PendingKey = tuple[str, int, int]  # camera_id, query_id, track_id


@dataclass
class _Entry:
    candidate: Candidate
    opens: bool
    put_at: float
    sequence: int

    @property
    def order(self) -> tuple[int, int, float, int]:
        """Ascending order of service: updates, then severity (most urgent first), score, age."""
        c = self.candidate
        return (0 if not self.opens else 1, -severity_rank(c.severity), -c.score, self.sequence)

    @property
    def incident(self) -> tuple[object, ...]:
        """Opens of one (camera, query) share an incident; each update is its own."""
        c = self.candidate
        if self.opens:
            return ("open", c.camera_id, c.query_id)
        return ("update", c.camera_id, c.query_id, c.track_id)

    @property
    def key(self) -> PendingKey:
        c = self.candidate
        return (c.camera_id, c.query_id, c.track_id)


@dataclass
class QueueStats:
    """Counts since start: ``put = queued + replaced + dropped + taken`` once drained."""

    put: int = 0
    replaced: int = 0
    dropped: int = 0
    expired: int = 0
    decided: int = 0
    failed: int = 0
    discarded_at_close: int = 0
    queued: int = 0
    in_flight: int = 0


@dataclass
class CandidateQueue:
    """Bounded priority queue of candidates; when full the least urgent entry is dropped and counted.

    Thread-safe. At most ``per_incident`` opens of one (camera, query) wait (``matching.top_k``):
    a newer candidate of the same person, or of a full incident, takes the place of the queued one
    (that person's, else the incident's lowest-scored), so the queue holds the latest evidence and
    a slow LMM never lets one incident fill it. One update per episode waits.
    """

    maxsize: int
    per_incident: int = 1
    clock: Callable[[], float] = time.monotonic
    stats: QueueStats = field(default_factory=QueueStats)
    _entries: list[_Entry] = field(default_factory=list, init=False)
    _in_flight: set[PendingKey] = field(default_factory=set, init=False)
    _overflow: list[_Entry] = field(default_factory=list, init=False)
    _sequence: int = field(default=0, init=False)
    _closed: bool = field(default=False, init=False)
    cond: threading.Condition = field(default_factory=threading.Condition, init=False)

    def __post_init__(self) -> None:
        if self.maxsize < 1:
            raise ValueError("maxsize must be at least 1")

    def put(self, candidate: Candidate, *, opens: bool = True) -> bool:
        """Queue a candidate; False when it was dropped at once (queue full of more urgent ones)."""
        with self.cond:
            if self._closed:
                return False
            self._sequence += 1
            self.stats.put += 1
            entry = _Entry(candidate, opens, self.clock(), self._sequence)
            same = [e for e in self._entries if e.incident == entry.incident]
            limit = self.per_incident if opens else 1
            replaced = next((e for e in same if e.key == entry.key), None)
            if replaced is None and len(same) >= limit:
                replaced = min(same, key=lambda e: (e.candidate.score, e.sequence))
            if replaced is not None:
                self._entries[self._entries.index(replaced)] = entry
                self.stats.replaced += 1
                self.cond.notify_all()
                return True
            self._entries.append(entry)
            if len(self._entries) > self.maxsize:
                worst = max(self._entries, key=lambda e: e.order)
                self._entries.remove(worst)
                self.stats.dropped += 1
                log.debug("candidate queue full: dropped %s", worst.key)
                if worst.opens:
                    self._overflow.append(worst)  # the stage says what becomes of it (unverified)
                if worst is entry:
                    return False
            self.cond.notify_all()
            return True

    def put_window(self, opens: list[Candidate], updates: list[Candidate]) -> None:
        """Queue one window's selection."""
        for candidate in updates:
            self.put(candidate, opens=False)
        for candidate in opens:
            self.put(candidate, opens=True)

    def pending(self) -> frozenset[PendingKey]:
        """(camera, query, track) of the opens queued or in flight."""
        with self.cond:
            return frozenset({e.key for e in self._entries if e.opens} | self._in_flight)

    def __len__(self) -> int:
        with self.cond:
            return len(self._entries)

    def close(self) -> None:
        with self.cond:
            self._closed = True
            self.cond.notify_all()

    # --- consumer side (the dispatcher) --------------------------------------------------------

    def _take(self, entries: list[_Entry]) -> list[_Entry]:
        for entry in entries:
            self._entries.remove(entry)
            if entry.opens:
                self._in_flight.add(entry.key)
        return entries

    def take_overflow(self) -> list[_Entry]:
        overflow, self._overflow = self._overflow, []
        return overflow

    def take_updates(self) -> list[_Entry]:
        return self._take([e for e in self._entries if not e.opens])

    def take_expired(self, deadline_s: float | None) -> list[_Entry]:
        if deadline_s is None:
            return []
        now = self.clock()
        return self._take([e for e in self._entries if e.opens and now - e.put_at > deadline_s])

    def take_opens(self, count: int) -> list[_Entry]:
        opens = sorted((e for e in self._entries if e.opens), key=lambda e: e.order)
        return self._take(opens[: max(0, count)])

    def next_expiry(self, deadline_s: float | None) -> float | None:
        if deadline_s is None or not self._entries:
            return None
        return min(e.put_at for e in self._entries) + deadline_s

    def done(self, entries: list[_Entry]) -> None:
        with self.cond:
            for entry in entries:
                self._in_flight.discard(entry.key)
            self.cond.notify_all()

    def metrics(self) -> list[Metric]:
        """Candidates dropped: by the full queue (``candidates``) and past their deadline (``stale``)."""
        stats = self.snapshot_stats()
        dropped = Metric("watchword_candidates_dropped_total", "counter", "Candidates dropped by full queues")
        return [dropped.add(stats.dropped, queue="candidates").add(stats.expired, queue="stale")]

    def snapshot_stats(self) -> QueueStats:
        with self.cond:
            return QueueStats(
                **{**vars(self.stats), "queued": len(self._entries), "in_flight": len(self._in_flight)}
            )


class DecisionDispatcher:
    """The thread that takes candidates from the queue, lets ``stage`` decide, and submits to ``sink``.

    Without a stage every candidate goes to the sink as it is. Updates never wait for the stage.
    """

    def __init__(
        self, queue: CandidateQueue, sink: DecisionSink, stage: CandidateStage | None = None
    ) -> None:
        self.queue = queue
        self.sink = sink
        self.stage = stage
        self._late: list[Decision] = []  # decisions on dropped candidates, submitted with the next work
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decisions", daemon=True)
        self._thread.start()

    def _next(self) -> tuple[list[_Entry], list[_Entry], list[_Entry]] | None:
        """(updates, expired or dropped, batch) to handle now; None once closed and drained."""
        queue, stage = self.queue, self.stage
        deadline_s = None if stage is None else stage.deadline_s
        with queue.cond:
            while True:
                if self._stop.is_set():
                    if stage is not None:
                        queue.stats.discarded_at_close += sum(1 for e in queue._entries if e.opens)
                        queue._entries = [e for e in queue._entries if not e.opens]
                    if not queue._entries and not self._late:
                        return None
                updates = queue.take_updates()
                expired = queue.take_expired(deadline_s)
                dropped = queue.take_overflow()
                room = len(queue._entries) if stage is None else stage.capacity()
                batch = queue.take_opens(room)
                if dropped and stage is not None:
                    self._overflow(dropped)
                if updates or expired or batch or self._late:
                    return updates, expired, batch
                wait = IDLE_WAIT_S
                if queue._entries and stage is not None:
                    wait = min(wait, max(0.001, stage.wait_s()))
                    expiry = queue.next_expiry(deadline_s)
                    if expiry is not None:
                        wait = min(wait, max(0.001, expiry - queue.clock()))
                queue.cond.wait(wait)

    def _run(self) -> None:
        while True:
            work = self._next()
            if work is None:
                return
            updates, expired, batch = work
            try:
                self._handle(updates, expired, batch)
            finally:
                self.queue.done(updates + expired + batch)

    def _overflow(self, dropped: list[_Entry]) -> None:
        """Hand what the full queue dropped to the stage (under the queue's lock: no LMM call)."""
        assert self.stage is not None
        now = self.queue.clock()
        for decision in self.stage.overflow(
            [e.candidate for e in dropped], [now - e.put_at for e in dropped]
        ):
            self._late.append(decision)

    def _handle(self, updates: list[_Entry], expired: list[_Entry], batch: list[_Entry]) -> None:
        now = self.queue.clock()
        for entry in updates:
            self._submit(entry.candidate, opens=False)
        decisions, self._late = self._late, []
        if self.stage is None:
            decisions += [Decision(e.candidate, queued_s=now - e.put_at) for e in batch]
        else:
            if expired:
                self.queue.stats.expired += len(expired)
                decisions += self.stage.expire(
                    [e.candidate for e in expired], [now - e.put_at for e in expired]
                )
            if batch:
                decisions += self._decide(batch, now)
        for decision in decisions:
            self._submit(decision.candidate, opens=True)

    def _submit(self, candidate: Candidate, *, opens: bool) -> None:
        try:
            self.sink.submit(candidate, opens=opens)
        except Exception:
            log.exception("candidate %s: the alert manager failed", candidate.camera_id)

    def _decide(self, batch: list[_Entry], now: float) -> list[Decision]:
        assert self.stage is not None
        candidates = [e.candidate for e in batch]
        waited = [now - e.put_at for e in batch]
        try:
            decisions = self.stage.decide(candidates, waited)
        except Exception as exc:  # a bug or a backend that broke its contract: keep the thread alive
            log.exception("stage failed on a batch of %d", len(batch))
            error = f"{type(exc).__name__}: {exc}"
            decisions = [
                Decision(c, error=error, queued_s=w) for c, w in zip(candidates, waited, strict=True)
            ]
        failed = sum(1 for d in decisions if d.error is not None)
        with self.queue.cond:
            self.queue.stats.decided += len(decisions) - failed
            self.queue.stats.failed += failed
        for decision in decisions:
            if decision.error is not None:
                c = decision.candidate
                log.warning(
                    "deciding %s/%s/%s failed: %s", c.camera_id, c.query_id, c.track_id, decision.error
                )
        return decisions

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is queued or in flight (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self.queue.cond:
            while self.queue._entries or self.queue._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self.queue.cond.wait(min(remaining, 0.1))
            return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what needs no stage, discard opens still waiting for one, stop within ``timeout_s``."""
        self._stop.set()
        self.queue.close()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("decisions: a stage call still runs after %.1f s; leaving it to finish", timeout_s)
