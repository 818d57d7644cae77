"""The console's API against one running agent (sample video, SSD, ByteTrack, tiny CLIP export, alerts
with evidence): cookie sign-in with CSRF, the SSE push channel with resume, cameras changed at run
time, search over recent tracks, trying a query, and review marks with feedback."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import pytest

from agent.matching.scoring import calibrated_scores
from tests.agent.console.agent_fixture import TOKEN, RunningAgent, running_agent, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, clip_fp32: Path, sample_video: Path
) -> Iterator[RunningAgent]:
    with running_agent(tmp_path_factory.mktemp("console-api"), clip_fp32, sample_video) as running:
        # every track matches (threshold near 0), so the running agent raises alerts
        running.agent.registry.add("a person", threshold=0.01, severity="critical")
        yield running


def _alerts(live: RunningAgent) -> list[dict[str, Any]]:
    return list(live.request("GET", "/alerts")[1]["alerts"])


def _sse_events(
    live: RunningAgent, wanted: int, timeout_s: float, last_id: str | None = None
) -> list[dict[str, Any]]:
    """Read the event stream until ``wanted`` alert events arrived (id, event, data each)."""
    parts = urlsplit(live.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
    headers = {"Authorization": "Bearer " + live.agent.config.api.token}  # type: ignore[operator]
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    connection.request("GET", "/events", headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("text/event-stream")
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and sum(e["event"] == "alert" for e in events) < wanted:
            line = response.fp.readline().decode().rstrip("\n")
            if not line:
                if "event" in current:
                    events.append(current)
                current = {}
                continue
            key, _, value = line.partition(": ")
            if key in {"event", "id"}:
                current[key] = value
            elif key == "data":
                current["data"] = json.loads(value)
    finally:
        connection.close()
    return events


def test_sign_in_cookie_is_strict_and_httponly_and_mutations_need_the_csrf_token(live: RunningAgent) -> None:
    token = live.agent.config.api.token
    assert token is not None
    assert live.request("GET", "/queries", token=None)[0] == 401
    status, _, _ = live.request("POST", "/session", {"token": "wrong-token-wrong-token"}, token=None)
    assert status == 401
    parts = urlsplit(live.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request("POST", "/session", json.dumps({"token": token}), {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["signed_in"]
    raw = [v for k, v in response.getheaders() if k.lower() == "set-cookie"]
    connection.close()
    jar: SimpleCookie = SimpleCookie()
    for value in raw:
        jar.load(value)
    session_line = next(v.lower() for v in raw if v.startswith("watchword_session="))
    assert "httponly" in session_line and "samesite=strict" in session_line and "path=/" in session_line
    assert all(token not in v for v in raw)  # the token is never the cookie
    session, csrf = jar["watchword_session"].value, jar["watchword_csrf"].value
    cookie = {"Cookie": f"watchword_session={session}; watchword_csrf={csrf}"}
    assert live.request("GET", "/queries", token=None, headers=cookie)[0] == 200
    assert live.request("GET", "/session", token=None, headers=cookie)[1]["signed_in"] is True
    # a mutation with the cookie but without the CSRF header is refused (a cross-site form cannot add it)
    assert live.request("POST", "/queries", {"text": "csrf probe"}, token=None, headers=cookie)[0] == 403
    status, added, _ = live.request(
        "POST", "/queries", {"text": "csrf probe"}, token=None, headers={**cookie, "X-CSRF-Token": csrf}
    )
    assert status == 201
    assert (
        live.request(
            "DELETE", f"/queries/{added['id']}", token=None, headers={**cookie, "X-CSRF-Token": csrf}
        )[0]
        == 204
    )
    # sign-out ends the session on the server, not only in the browser
    assert live.request("DELETE", "/session", token=None, headers={**cookie, "X-CSRF-Token": csrf})[0] == 200
    assert live.request("GET", "/queries", token=None, headers=cookie)[0] == 401
    assert live.request("GET", "/session", token=None, headers=cookie)[1]["signed_in"] is False


def test_console_page_and_assets_are_served_locally(live: RunningAgent) -> None:
    status, page, _ = live.request("GET", "/", token=None)
    assert status == 200 and b"Watchword" in page
    for asset in ("/console/console.js", "/console/console.css", "/console/chart.js"):
        assert live.request("GET", asset, token=None)[0] == 200
    assert b"http://" not in page and b"https://" not in page  # nothing from a CDN


def test_push_channel_sends_alerts_and_status_and_resumes_after_last_event_id(live: RunningAgent) -> None:
    events = _sse_events(live, wanted=2, timeout_s=90)
    alerts = [e for e in events if e["event"] == "alert"]
    assert len(alerts) >= 2, events
    assert any(e["event"] == "status" and "sample" in e["data"] for e in events)
    stored = {(a["alert_id"], a["seq"]) for a in [e["data"] for e in alerts]}
    ids = [int(e["id"]) for e in alerts]
    assert ids == sorted(ids)
    # every pushed event is one the alert history holds
    for alert_id, seq in stored:
        history = live.agent.alerts.get(alert_id)
        assert any(event["seq"] == seq for event in history)
    # a reconnect with the first id replays what came after it, from the second event on
    replay = _sse_events(live, wanted=1, timeout_s=10, last_id=alerts[0]["id"])
    first_replayed = next(e for e in replay if e["event"] == "alert")
    assert first_replayed["id"] == alerts[1]["id"] and first_replayed["data"] == alerts[1]["data"]


def test_cameras_are_added_changed_and_removed_in_the_running_agent(live: RunningAgent) -> None:
    frames_before = live.health()["cameras"]["sample"]["frames"]
    status, camera, _ = live.request("POST", "/cameras", {"id": "pattern", "uri": "test://?fps=5"})
    assert status == 201, camera
    added_at = time.monotonic()
    wait_for(
        lambda: live.health()["cameras"].get("pattern", {}).get("state") == "running", 20, "the new camera"
    )
    assert time.monotonic() - added_at < 20
    assert live.health()["cameras"]["sample"]["frames"] > frames_before  # the others kept running
    assert live.request("GET", "/cameras/pattern")[1]["status"]["state"] == "running"
    assert live.request("POST", "/cameras", {"id": "pattern", "uri": "test://"})[0] == 422
    assert live.request("POST", "/cameras", {"id": "bad id!", "uri": "test://"})[0] == 422
    assert live.request("POST", "/cameras", {"id": "gone", "uri": "/no/such/video.mp4"})[0] == 422
    # queries may name the YAML's camera and one added at run time, not a camera the site lacks
    status, query, _ = live.request("POST", "/queries", {"text": "a person waving", "cameras": ["pattern"]})
    assert status == 201, query
    assert live.request("POST", "/queries", {"text": "a person waving", "cameras": ["patern"]})[0] == 422
    assert live.request("DELETE", f"/queries/{query['id']}")[0] == 204
    # disable: the camera stops, the row stays
    assert live.request("PATCH", "/cameras/pattern", {"enabled": False})[0] == 200
    wait_for(lambda: "pattern" not in live.health()["cameras"], 10, "the disabled camera to stop")
    assert live.request("DELETE", "/cameras/pattern")[0] == 204
    assert live.request("GET", "/cameras/pattern")[0] == 404
    assert "sample" in live.health()["cameras"]


def test_camera_credentials_are_stored_but_never_shown(live: RunningAgent) -> None:
    secret = "rtsp://admin:hunter2@127.0.0.1:9/stream"
    status, shown, _ = live.request("POST", "/cameras", {"id": "door", "uri": secret, "enabled": False})
    assert status == 201
    try:
        assert "hunter2" not in json.dumps(shown) and shown["has_credentials"] is True
        assert "hunter2" not in json.dumps(live.request("GET", "/cameras")[1])
        # an update without a uri keeps the stored credentials
        live.request("PATCH", "/cameras/door", {"analysis_fps": 2})
        assert live.agent.console.cameras.get("door").uri == secret
    finally:
        live.request("DELETE", "/cameras/door")


def test_test_connection_returns_a_snapshot_or_the_error(live: RunningAgent) -> None:
    ok = live.request("POST", "/cameras/test", {"uri": str(live.video)})[1]
    assert ok["ok"] and ok["snapshot"].startswith("data:image/jpeg;base64,") and ok["width"] > 0
    missing = live.request("POST", "/cameras/test", {"uri": str(live.video.parent / "no-such.mp4")})[1]
    assert not missing["ok"] and "no-such.mp4" in missing["error"]
    # outside the media folders (the camera's folder and <state_dir>/media): refused unread
    assert live.request("POST", "/cameras/test", {"uri": "/no/such/video.mp4"})[0] == 422
    stored = live.request("POST", "/cameras/test", {"id": "sample"})[1]
    assert stored["ok"]


def test_search_ranks_recent_tracks_with_the_live_calibrated_score(live: RunningAgent) -> None:
    wait_for(
        lambda: live.agent.console.index is not None and live.agent.console.index.count() >= 3, 60, "tracks"
    )
    status, body, _ = live.request("GET", "/search?text=" + quote("a person") + "&since=1h&limit=50")
    assert status == 200
    results = body["results"]
    assert results and [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert all(r["camera"] == "sample" and r["last_seen"] >= time.time() - 3600 for r in results)
    # the score is the live matcher's calibrated probability of the registered query "a person"
    matcher = live.agent.matcher
    assert matcher is not None and live.agent.console.index is not None
    wait_for(
        lambda: any(q.text == "a person" for q in matcher.bank.matrix.queries), 10, "the query in the bank"
    )
    matrix = matcher.bank.matrix
    column = next(i for i, q in enumerate(matrix.queries) if q.text == "a person")
    top = results[0]
    kept = live.agent.console.index.track_embeddings(top["camera"], top["track_id"])
    assert kept is not None
    probability, _ = calibrated_scores(
        kept,
        matrix.embeddings[column : column + 1],
        matrix.normal_bank,
        matrix.normal_index[column : column + 1],
        matcher.encoder.logit_scale,
    )
    assert float(probability.max()) == pytest.approx(top["score"], abs=1e-3)
    status, jpeg, headers = live.request("GET", top["thumbnail"])
    assert status == 200 and headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    # filters
    assert live.request("GET", "/search?text=x&camera=nowhere")[1]["results"] == []
    assert live.request("GET", f"/search?text=x&since={time.time() + 60}")[1]["results"] == []
    assert live.request("GET", "/search?text=x&since=yesterday")[0] == 422


def test_trying_a_query_shows_matches_and_the_threshold_for_a_rate(live: RunningAgent) -> None:
    wait_for(
        lambda: live.agent.console.index is not None and live.agent.console.index.count() >= 3, 60, "tracks"
    )
    draft = {"text": "a person walking", "alerts_per_hour": 1, "threshold": 0.05, "per_camera": 100}
    body = live.request("POST", "/queries/try", draft)[1]
    assert 3 <= body["tracks"] <= 100
    hits = body["cameras"]["sample"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and len(hits) == body["tracks"]
    assert body["would_alert"] == sum(s >= 0.05 for s in scores)
    assert all(h["would_alert"] == (h["score"] >= 0.05) for h in hits)
    suggested = body["suggested_threshold"]
    assert suggested is not None and 0 < suggested < 1
    # at the suggested threshold, one alert per hour of this footage (at least one) would have been raised
    wanted = max(1, round(body["footage_hours"]))
    assert sum(s >= suggested for s in scores) == wanted
    assert not any(
        q["text"] == "a person walking" for q in live.request("GET", "/queries")[1]
    )  # nothing saved


def test_trying_and_searching_within_a_zone_count_only_tracks_seen_standing_in_it(live: RunningAgent) -> None:
    """A draft limited to a zone (and a search for one) scores each track by the views taken with its
    feet in the zone on that camera, as the standing query would; the answer names the zones applied,
    each hit says where the person stood, and a zone no camera has finds nothing, with a warning."""
    wait_for(
        lambda: live.agent.console.index is not None and live.agent.console.index.count() >= 3, 60, "tracks"
    )
    left = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
    status, camera, _ = live.request(
        "PATCH", "/cameras/sample", {"zones": [{"name": "left", "points": left}]}
    )
    assert status == 200 and camera["zones"][0]["name"] == "left"
    try:
        draft = {"text": "a person walking", "threshold": 0.05, "per_camera": 100}
        anywhere = live.request("POST", "/queries/try", draft)[1]
        assert anywhere.get("zones") is None
        feet = [h["foot"] for h in anywhere["cameras"]["sample"]]
        assert any(x >= 0.5 for x, _ in feet) and any(x < 0.5 for x, _ in feet), feet
        status, zoned, _ = live.request("POST", "/queries/try", {**draft, "zones": ["left"]})
        assert status == 200 and zoned["zones"] == ["left"] and not zoned["warnings"]
        hits = zoned["cameras"]["sample"]
        assert hits and len(hits) == zoned["tracks"]
        assert all(h["foot"][0] < 0.5 for h in hits), [h["foot"] for h in hits]
        assert zoned["would_alert"] == sum(h["score"] >= 0.05 for h in hits)
        status, nowhere, _ = live.request("POST", "/queries/try", {**draft, "zones": ["dock"]})
        assert status == 200 and nowhere["tracks"] == 0 and nowhere["cameras"] == {}
        assert nowhere["zones"] == ["dock"] and "'dock' is on no camera" in nowhere["warnings"][0]
        assert live.request("POST", "/queries/try", {**draft, "zones": ["the door"]})[0] == 422
        status, found, _ = live.request("GET", "/search?text=a%20person&limit=50&zone=left")
        assert status == 200 and found["zones"] == ["left"] and found["results"]
        assert all(r["foot"][0] < 0.5 for r in found["results"])
        everywhere = live.request("GET", "/search?text=a%20person&limit=50")[1]
        assert everywhere.get("zones") is None and any(r["foot"][0] >= 0.5 for r in everywhere["results"])
    finally:
        assert live.request("PATCH", "/cameras/sample", {"zones": []})[0] == 200


def test_false_alarm_mark_is_stored_returned_exported_and_teaches_the_matcher(live: RunningAgent) -> None:
    alert = wait_for(lambda: next(iter(_alerts(live)), None), 90, "an alert")
    alert_id = alert["alert_id"]
    assert alert["review"]["state"] == "new"
    wait_for(lambda: (live.root / "state" / "evidence" / alert_id / "crop.jpg").exists(), 10, "evidence")
    detail = live.request("GET", f"/alerts/{alert_id}")[1]
    assert detail["evidence"]["score_history"] and detail["deliveries"][0]["sink"] == "jsonl"
    before = live.agent.console.exemplars.count()
    status, review, _ = live.request(
        "POST", f"/alerts/{alert_id}/review", {"action": "false_alarm", "note": "a shadow"}
    )
    assert status == 200 and review["verdict"] == "false" and review["state"] == "acknowledged"
    # stored and returned by the API
    listed = next(a for a in _alerts(live) if a["alert_id"] == alert_id)
    assert listed["review"]["verdict"] == "false" and listed["review"]["note"] == "a shadow"
    assert live.request("GET", f"/alerts/{alert_id}")[1]["review"]["verdict"] == "false"
    # exported in the evidence bundle
    exported = json.loads((live.root / "state" / "evidence" / alert_id / "review.json").read_text())
    assert exported["verdict"] == "false" and exported["history"][-1]["action"] == "false_alarm"
    # the track's crops are now negative exemplars of that query on that camera
    assert live.agent.console.exemplars.count(alert["query_id"]) > 0
    assert live.agent.console.exemplars.count() > before
    # resolve keeps the verdict; marking it a true alarm forgets its exemplars
    assert live.request("POST", f"/alerts/{alert_id}/review", {"action": "resolve"})[1]["state"] == "resolved"
    assert (
        live.request("POST", f"/alerts/{alert_id}/review", {"action": "true_alarm"})[1]["verdict"] == "true"
    )
    assert live.agent.console.exemplars.count() == before
    assert live.request("POST", "/alerts/nope/review", {"action": "resolve"})[0] == 404
    assert live.request("POST", f"/alerts/{alert_id}/review", {"action": "explode"})[0] == 422


def test_live_frame_is_drawn_on_demand_and_changes(live: RunningAgent) -> None:
    status, first, headers = live.request("GET", "/cameras/sample/live.jpg")
    assert status == 200 and first[:2] == b"\xff\xd8"
    index = int(headers["x-frame-index"])
    wait_for(
        lambda: int(live.request("GET", "/cameras/sample/live.jpg")[2]["x-frame-index"]) > index,
        10,
        "a newer frame",
    )
    assert live.request("GET", "/cameras/nowhere/live.jpg")[0] == 404
    assert live.request("GET", "/cameras/sample/live.jpg", token=None)[0] == 401
    assert np.frombuffer(first, np.uint8).size > 1000


def test_search_command_line_finds_what_the_api_finds(
    live: RunningAgent, clip_fp32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    wait_for(
        lambda: live.agent.console.index is not None and live.agent.console.index.count() >= 3, 60, "tracks"
    )
    config = live.root / "site.yaml"
    config.write_text(
        f"state_dir: {live.root}/state\n"
        f"database: {live.root}/state/watchword.db\n"
        f"cameras:\n  - {{id: sample, uri: '{live.video}'}}\n"
        "matching:\n  embedder:\n"
        f"    model_dir: '{clip_fp32}'\n"
        "    engine: {type: onnxruntime, providers: [cpu]}\n"
    )
    api = live.request("GET", "/search?text=" + quote("a person walking") + "&since=1h&limit=5")[1]["results"]
    capsys.readouterr()
    assert (
        main(
            ["search", "a person walking", "--config", str(config), "--since", "1h", "--limit", "5", "--json"]
        )
        == 0
    )
    cli = json.loads(capsys.readouterr().out)
    assert cli and api
    # the running agent may have added tracks between the two calls: compare the tracks both saw
    both = {r["key"] for r in api} & {r["key"] for r in cli}
    assert both
    scores = {r["key"]: r["score"] for r in cli}
    assert all(abs(scores[r["key"]] - r["score"]) < 1e-3 for r in api if r["key"] in both)
    assert main(["search", "x", "--config", str(config), "--since", "yesterday"]) == 2
    # a camera the site does not have is named as such, not answered with "no tracks"
    capsys.readouterr()
    assert main(["search", "a person walking", "--config", str(config), "--camera", "nosuch"]) == 2
    captured = capsys.readouterr()
    assert "unknown camera 'nosuch'; the site's cameras: sample" in captured.err
    assert "no tracks" not in captured.out
    assert main(["search", "a person walking", "--config", str(config), "--camera", "sample", "--json"]) == 0
    assert {r["camera"] for r in json.loads(capsys.readouterr().out)} == {"sample"}


def test_live_stream_pushes_new_frames_as_mjpeg(live: RunningAgent) -> None:
    parts = urlsplit(live.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    connection.request("GET", "/cameras/sample/live.mjpg?fps=5", headers={"Authorization": f"Bearer {TOKEN}"})
    response = connection.getresponse()
    try:
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("multipart/x-mixed-replace")
        indices: list[int] = []
        deadline = time.monotonic() + 20
        while len(indices) < 3 and time.monotonic() < deadline:
            line = response.fp.readline().decode("latin-1").strip()
            if line.lower().startswith("x-frame-index:"):
                indices.append(int(line.split(":", 1)[1]))
            elif line.lower().startswith("content-length:"):
                pass
        assert len(indices) == 3 and indices == sorted(indices) and len(set(indices)) == 3
    finally:
        connection.close()
