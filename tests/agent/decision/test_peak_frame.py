"""The evidence frame of an alert is where the query's sample peaked, not the track's latest sample
(found: a "standing still" alert's crop showed the person mid-stride as they walked off)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent, AlertEventKind
from agent.decision.core import DecisionCore
from agent.decision.records import FrameRecord
from agent.matching.config import MatchingConfig
from agent.queries import QueryRegistry
from agent.types import Frame, TrackEvent, TrackEventKind


def _frame(index: int, t: float) -> Frame:
    image = np.full((120, 160, 3), index, np.uint8)  # each frame's pixels say which frame it is
    return Frame("gate", index, t, 1000.0 + t, image)


def test_the_candidate_frame_is_the_peak_sample_frame(tmp_path: Path) -> None:
    registry = QueryRegistry(tmp_path / "q.db")
    still = registry.add("a person standing still", threshold=0.5)
    other = registry.add("a person running", threshold=0.5)
    registry.close()
    queries = {still.id: still, other.id: other}
    events: list[AlertEvent] = []
    core = DecisionCore(MatchingConfig(window_s=1.0), AlertsConfig(), queries.get, events.extend)
    # the still query peaks at frame 1, the running one at frame 2, before either alert opens; the
    # person walks on (the box moves 6 px a frame), so the latest frame is elsewhere
    for index in range(0, 16):
        t = index * 0.1
        box = (10.0 + 6 * index, 10.0, 50.0 + 6 * index, 100.0)
        low = index < 3  # pooled under the threshold: the alerts open later, at the steady scores
        p_still = 0.95 if index == 1 else 0.3 if low else 0.7
        p_run = 0.9 if index == 2 else 0.2 if low else 0.6
        record = FrameRecord("gate", index, t, 1000.0 + t, t, 160, 120, frame=_frame(index, t))
        if index == 0:
            record.columns = [(still.id, "s"), (other.id, "r")]
        record.boxes = {1: box}
        record.samples = {1: {still.id: p_still, other.id: p_run}}
        core.feed(record)
    opened = {e.episode.query_id: e for e in events if e.kind is AlertEventKind.OPENED}
    assert set(opened) == {still.id, other.id}
    for query_id, peak in ((still.id, 1), (other.id, 2)):
        candidate = opened[query_id].candidate
        assert candidate is not None
        assert candidate.frame_index == peak and int(candidate.frame[0, 0, 0]) == peak
        assert candidate.box[0] == 10.0 + 6 * peak
        assert candidate.wall_time == 1000.0 + peak * 0.1
        assert opened[query_id].episode.started_at > 0.25, "it opened after the peak, on later frames"
    # the track removed: its peaks are forgotten with it
    gone = FrameRecord("gate", 16, 1.6, 1001.6, 1.6, 160, 120)
    gone.events = [TrackEvent(TrackEventKind.REMOVED, "gate", 1, 16, 0.0, 0.0, 16)]
    core.feed(gone)
    assert len(core.peaks) == 0


def test_an_edited_query_forgets_its_peaks() -> None:
    from agent.decision.peaks import PeakFrames

    peaks = PeakFrames()
    peaks.keep_queries({1: "a", 2: "b"})
    frame = _frame(3, 0.3)
    peaks.observe("gate", 7, 1, 0.9, frame, (0.0, 0.0, 1.0, 1.0))
    peaks.observe("gate", 7, 2, 0.8, frame, (0.0, 0.0, 1.0, 1.0))
    peaks.observe("gate", 7, 2, 0.5, _frame(4, 0.4), (0.0, 0.0, 1.0, 1.0))
    peak = peaks.get("gate", 7, 2)
    assert peak is not None and peak.value == 0.8 and peak.frame.index == 3, "a lower sample keeps the peak"
    peaks.keep_queries({1: "a", 2: "b, edited"})
    assert peaks.get("gate", 7, 1) is not None and peaks.get("gate", 7, 2) is None
