"""Finding 2: a camera changed at run time starts afresh; nobody inherits an old alert or cooldown.

On main the changed camera's new tracker counted ids from 1 again while scores, windows, open
episodes and cooldowns stayed keyed by (camera, id): a new person 1 inherited the old person 1's
pooled score and open alert, and the removed camera's episodes never closed until shutdown.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent, AlertEventKind
from agent.config import AgentConfig, SSDDetectorConfig
from agent.decision.core import DecisionCore
from agent.decision.records import FrameRecord
from agent.detection import DetectorError, build_detector
from agent.matching.config import MatchingConfig
from agent.pipeline import Pipeline
from agent.queries import QueryRegistry
from agent.types import FrameResult, TrackEvent, TrackEventKind

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def _record(index: int, t: float, samples: dict[int, float], query_id: int, **extra: object) -> FrameRecord:
    record = FrameRecord("gate", index, t, 1000.0 + t, t, 160, 120, **extra)  # type: ignore[arg-type]
    record.boxes = {track: (10.0, 10.0, 50.0, 100.0) for track in samples}
    record.samples = {track: {query_id: p} for track, p in samples.items()}
    return record


def test_a_changed_camera_closes_its_alerts_and_forgets_its_people(tmp_path: Path) -> None:
    registry = QueryRegistry(tmp_path / "q.db")
    query = registry.add("a person falling down", threshold=0.5, cooldown_s=600.0)
    registry.close()
    events: list[AlertEvent] = []
    core = DecisionCore(
        MatchingConfig(window_s=1.0), AlertsConfig(cooldown_s=600.0), {query.id: query}.get, events.extend
    )
    core.feed(_record(0, 0.0, {1: 0.9}, query.id, columns=[(query.id, "h")]))
    for index in range(1, 30):
        core.feed(_record(index, index * 0.1, {1: 0.9}, query.id))
    opened = [e for e in events if e.kind is AlertEventKind.OPENED]
    assert [(e.episode.track_id, e.kind) for e in opened] == [(1, AlertEventKind.OPENED)]
    # the operator changes the camera: one last record ends its person
    removed = TrackEvent(TrackEventKind.REMOVED, "gate", 1, 30, 0.0, 0.0, 30)
    core.feed(_record(30, 3.5, {}, query.id, events=[removed], camera_ended=True))
    closed = [e for e in events if e.kind is AlertEventKind.CLOSED]
    assert [e.alert_id for e in closed] == [opened[0].alert_id]
    assert closed[0].episode.ended_at == pytest.approx(2.9), "when the person was last seen"
    assert not core.book.tracks and not core.episodes.alert_state().opened_at
    # the new source's pts start at 0 again; even a person under the old id is someone new: a new
    # alert at once, no cooldown inherited, no old pooled score
    events.clear()
    for index in range(0, 30):
        core.feed(_record(31 + index, index * 0.1, {1: 0.9}, query.id))
    reopened = [e for e in events if e.kind is AlertEventKind.OPENED]
    assert len(reopened) == 1 and reopened[0].alert_id != opened[0].alert_id
    assert reopened[0].episode.started_at < 3.0


def test_a_camera_replaced_at_run_time_ends_its_people_and_its_ids_go_on(tmp_path: Path) -> None:
    if not SAMPLE.exists():
        pytest.skip("the sample video (Debian opencv-doc) is missing")
    try:
        ssd = build_detector(SSDDetectorConfig.model_validate({"type": "ssd-mobilenet", "batch_size": 2}))
    except DetectorError as exc:
        pytest.skip(str(exc))
    camera = {"id": "gate", "uri": str(SAMPLE), "max_width": 384, "max_height": 288, "analysis_fps": 5}
    config = AgentConfig.model_validate({"state_dir": str(tmp_path), "cameras": [camera]})
    seen: list[FrameResult] = []
    changed = threading.Event()

    class Recorder:
        def process(self, results: list[FrameResult]) -> None:
            seen.extend(results)
            if (
                not changed.is_set()
                and sum(1 for r in seen if r.tracks.tracker_id is not None and len(r.tracks)) >= 25
            ):
                changed.set()
                pipeline.add_camera(config.cameras[0].model_copy(update={"max_width": 320}))
            if changed.is_set() and seen[-1].frame.width == 320 and seen[-1].frame.index >= 20:
                pipeline.stop()

    pipeline = Pipeline(config, detector=ssd, analyzers=[Recorder()], keep_running=True, duration_s=120)
    pipeline.run()
    ssd.close()
    ended = [r for r in seen if r.extra.get("camera_ended")]
    assert len(ended) == 1, "one record ends the old camera"
    before = seen[: seen.index(ended[0])]
    after = seen[seen.index(ended[0]) + 1 :]
    old_ids = {int(t) for r in before if r.tracks.tracker_id is not None for t in r.tracks.tracker_id}
    live = {e.track_id for e in ended[0].events if e.kind is TrackEventKind.REMOVED}
    gone = {e.track_id for r in before for e in r.events if e.kind is TrackEventKind.REMOVED}
    assert old_ids and live == old_ids - gone, "every person the camera still had is removed"
    new_ids = {int(t) for r in after if r.tracks.tracker_id is not None for t in r.tracks.tracker_id}
    assert new_ids and min(new_ids) > max(old_ids), "the new tracker's ids go on from the old one's"
