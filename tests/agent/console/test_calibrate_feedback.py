"""``watchword calibrate --from-feedback``: thresholds re-fitted from true / false alarm marks stored
by the review store in a real alerts database (SQLite outbox), through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.alerts.outbox import Outbox
from agent.cli import main
from agent.commands.calibrate_feedback import fit_threshold
from agent.console.reviews import ReviewStore
from agent.queries import QueryRegistry


def test_fit_threshold_separates_marks_and_keeps_true_alarms_on_ties() -> None:
    assert fit_threshold([0.8, 0.9], [0.3, 0.5]) == pytest.approx(0.65)
    assert fit_threshold([], [0.4, 0.6]) == pytest.approx(0.605)  # only false alarms: just above them
    assert fit_threshold([0.7], []) is None  # nothing says the threshold is too low
    # overlapping marks: the fewest mistakes (one), the lowest such threshold
    assert fit_threshold([0.5, 0.9], [0.6]) == pytest.approx(0.495)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(f"state_dir: {tmp_path}/state\ncameras:\n  - {{id: cam, uri: 'test://'}}\n")
    return path


def _alert(outbox: Outbox, alert_id: str, query_id: int, score: float) -> None:
    payload = {
        "alert_id": alert_id,
        "event_id": f"{alert_id}/0",
        "seq": 0,
        "event": "opened",
        "camera": "cam",
        "query_id": query_id,
        "track_id": 1,
        "started_at": 1.0,
        "score": score,
        "peak_score": score,
    }
    outbox.enqueue(payload, [], created_at=1.0)


def test_calibrate_from_feedback_sets_calibrated_thresholds_and_keeps_hand_set_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    registry = QueryRegistry(tmp_path / "state" / "watchword.db")
    auto = registry.add("a person falling down")
    manual = registry.add("someone climbing the fence", threshold=0.2)
    registry.close()
    outbox = Outbox(tmp_path / "state" / "alerts.db")
    for alert_id, query_id, score in (
        ("a1", auto.id, 0.82),
        ("a2", auto.id, 0.91),
        ("a3", auto.id, 0.44),
        ("a4", auto.id, 0.58),
        ("b1", manual.id, 0.3),
    ):
        _alert(outbox, alert_id, query_id, score)
    outbox.close()
    reviews = ReviewStore(tmp_path / "state" / "alerts.db", tmp_path / "state" / "evidence")
    for alert_id, action in (
        ("a1", "true_alarm"),
        ("a2", "true_alarm"),
        ("a3", "false_alarm"),
        ("a4", "false_alarm"),
    ):
        reviews.mark(alert_id, action)  # type: ignore[arg-type]
    reviews.mark("b1", "false_alarm")
    reviews.close()

    assert main(["calibrate", str(config), "--from-feedback", "--dry-run"]) == 0
    registry = QueryRegistry(tmp_path / "state" / "watchword.db")
    assert registry.get(auto.id).threshold is None  # a dry run changes nothing
    assert main(["calibrate", str(config), "--from-feedback"]) == 0
    fitted = registry.get(auto.id)
    assert fitted.threshold == pytest.approx(0.70) and fitted.threshold_source == "calibrated"
    assert registry.get(manual.id).threshold == pytest.approx(0.2)  # set by hand: kept
    assert "set by hand, kept" in capsys.readouterr().out
    assert main(["calibrate", str(config), "--from-feedback", "--overwrite-manual"]) == 0
    assert registry.get(manual.id).threshold == pytest.approx(0.305)
    # without marks, or without footage and target, it says what is missing
    assert main(["calibrate", str(config)]) == 2
