"""The one candidate queue: opens waiting for the LMM stage, owned by the decision core's thread.

Not thread-safe by design: only :class:`~agent.decision.core.DecisionCore` touches it, between two
records. Ordering (who is served first):

1. severity, most urgent first;
2. among equal severity, the incident (camera, query) served least recently first, so one incident
   with the best score cannot keep the head of the queue: equal-severity incidents take turns;
3. then score, then age.

At most ``per_incident`` opens of one incident wait (``matching.top_k``): a newer candidate of the
same person, or of a full incident, takes the place of the queued one. When the queue is full the
least urgent entry is dropped, counted and handed back as overflow (the stage passes it on
unverified, ``budget``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from agent.matching.selection import severity_rank
from agent.types import Candidate

log = logging.getLogger(__name__)

PendingKey = tuple[str, int, int]  # camera_id, query_id, track_id
Incident = tuple[str, int]  # camera_id, query_id


@dataclass
class Entry:
    """One queued open: the candidate, when it was put (the queue clock's seconds), its sequence."""

    candidate: Candidate
    put_at: float
    sequence: int

    @property
    def key(self) -> PendingKey:
        c = self.candidate
        return (c.camera_id, c.query_id, c.track_id)

    @property
    def incident(self) -> Incident:
        return (self.candidate.camera_id, self.candidate.query_id)


@dataclass
class QueueStats:
    """Counts since start: ``put = queued + replaced + dropped + expired + taken + discarded``."""

    put: int = 0
    replaced: int = 0
    dropped: int = 0
    expired: int = 0
    taken: int = 0
    discarded: int = 0
    queued: int = 0
    in_flight: int = 0


@dataclass
class CandidateQueue:
    """Bounded queue of opens in the order of service above (single-threaded)."""

    maxsize: int
    per_incident: int = 1
    stats: QueueStats = field(default_factory=QueueStats)
    entries: list[Entry] = field(default_factory=list)
    _served: dict[Incident, int] = field(default_factory=dict)
    _turn: int = 0
    _sequence: int = 0

    def __post_init__(self) -> None:
        if self.maxsize < 1:
            raise ValueError("maxsize must be at least 1")

    def order(self, entry: Entry) -> tuple[int, int, float, int]:
        """Ascending order of service: severity, the incident's last turn, score, age."""
        c = entry.candidate
        return (-severity_rank(c.severity), self._served.get(entry.incident, 0), -c.score, entry.sequence)

    def put(self, candidate: Candidate, now: float) -> list[Entry]:
        """Queue an open at queue-clock ``now``; returns what the full queue dropped (maybe this one)."""
        self._sequence += 1
        self.stats.put += 1
        entry = Entry(candidate, now, self._sequence)
        same = [e for e in self.entries if e.incident == entry.incident]
        replaced = next((e for e in same if e.key == entry.key), None)
        if replaced is None and len(same) >= self.per_incident:
            replaced = min(same, key=lambda e: (e.candidate.score, e.sequence))
        if replaced is not None:
            if replaced.key == entry.key:
                entry.put_at = replaced.put_at  # the same person keeps their place in time
            self.entries[self.entries.index(replaced)] = entry
            self.stats.replaced += 1
            return []
        self.entries.append(entry)
        if len(self.entries) <= self.maxsize:
            return []
        worst = max(self.entries, key=self.order)
        self.entries.remove(worst)
        self.stats.dropped += 1
        return [worst]

    def pending(self) -> set[PendingKey]:
        return {e.key for e in self.entries}

    def take_expired(self, deadline_s: float | None, now_of: dict[str, float]) -> list[Entry]:
        """Entries that waited past ``deadline_s`` (each on its own camera's queue clock)."""
        if deadline_s is None:
            return []
        stale = [
            e for e in self.entries if now_of.get(e.candidate.camera_id, e.put_at) - e.put_at > deadline_s
        ]
        for entry in stale:
            self.entries.remove(entry)
        self.stats.expired += len(stale)
        return stale

    def take(self, count: int) -> list[Entry]:
        """The next ``count`` entries in the order of service; each incident served takes its turn."""
        chosen = sorted(self.entries, key=self.order)[: max(0, count)]
        for entry in chosen:
            self.entries.remove(entry)
            self._turn += 1
            self._served[entry.incident] = self._turn
        self.stats.taken += len(chosen)
        return chosen

    def discard(self, camera_id: str | None = None) -> list[Entry]:
        """Remove (without a decision) every entry, or those of one camera."""
        gone = [e for e in self.entries if camera_id is None or e.candidate.camera_id == camera_id]
        for entry in gone:
            self.entries.remove(entry)
        if camera_id is not None:
            self._served = {k: v for k, v in self._served.items() if k[0] != camera_id}
        self.stats.discarded += len(gone)
        return gone

    def __len__(self) -> int:
        return len(self.entries)
