"""The HTTP API served by uvicorn on 127.0.0.1: auth, queries CRUD, validation, health, metrics, alerts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.app import ApiContext, create_app
from agent.api.server import ApiServer
from agent.queries import QueryRegistry

TOKEN = "test-token-0123456789abcdef"


class FakeAlerts:
    """A stand-in alert store: records the filters it was asked for (the real one is tested in alerts/)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def recent(self, limit: int = 100, offset: int = 0, **filters: Any) -> list[dict[str, Any]]:
        self.calls.append({"limit": limit, "offset": offset, **filters})
        return [{"alert_id": "a1", "camera": "dock-1"}]

    def dead_letters(
        self, *, sink: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        return []

    def retry_dead_letters(self, *, sink: str | None = None, event_row: int | None = None) -> int:
        return 0


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ApiServer, QueryRegistry, FakeAlerts, Path]]:
    registry = QueryRegistry(tmp_path / "w.db")
    alerts = FakeAlerts()
    evidence = tmp_path / "evidence"
    (evidence / "a1").mkdir(parents=True)
    (evidence / "a1" / "crop.jpg").write_bytes(b"\xff\xd8jpeg")
    (tmp_path / "secret.txt").write_text("do not serve")
    context = ApiContext(
        registry=registry,
        token=TOKEN,
        health=lambda: {"status": "ok", "cameras": {"dock-1": {"state": "running", "fps": 9.5}}},
        metrics=lambda: (
            "# HELP watchword_frames_total x\n# TYPE watchword_frames_total counter\n"
            'watchword_frames_total{camera="dock-1"} 12\n'
        ),
        alerts=alerts,
        evidence_dir=evidence,
        page_limit=50,
    )
    server = ApiServer(create_app(context), "127.0.0.1", 0)
    server.start()
    yield server, registry, alerts, evidence
    server.stop()


def call(
    server: ApiServer, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return status, raw


def test_health_needs_no_token_everything_else_does(api: Any) -> None:
    server = api[0]
    assert call(server, "GET", "/health", token=None) == (
        200,
        {"status": "ok", "cameras": {"dock-1": {"state": "running", "fps": 9.5}}},
    )
    for path in ("/queries", "/alerts", "/metrics", "/queries/1"):
        assert call(server, "GET", path, token=None)[0] == 401, path
        assert call(server, "GET", path, token="wrong-token-0123456789")[0] == 401, path
    assert call(server, "POST", "/queries", {"text": "a person running"}, token=None)[0] == 401


def test_queries_crud(api: Any) -> None:
    server, registry = api[0], api[1]
    status, created = call(
        server, "POST", "/queries", {"text": " a person falling down ", "severity": "critical"}
    )
    assert status == 201
    assert created["text"] == "a person falling down" and created["severity"] == "critical"
    assert registry.get(created["id"]).text == "a person falling down"  # the agent's database

    status, patched = call(server, "PATCH", f"/queries/{created['id']}", {"threshold": 0.8, "cameras": ["x"]})
    assert status == 200 and patched["threshold"] == 0.8 and patched["cameras"] == ["x"]
    status, cleared = call(server, "PATCH", f"/queries/{created['id']}", {"threshold": None})
    assert status == 200 and cleared["threshold"] is None and cleared["cameras"] == ["x"]

    assert call(server, "GET", "/queries")[1][0]["id"] == created["id"]
    assert call(server, "GET", f"/queries/{created['id']}")[1]["enabled"] is True
    assert call(server, "DELETE", f"/queries/{created['id']}")[0] == 204
    assert call(server, "GET", f"/queries/{created['id']}")[0] == 404
    assert call(server, "DELETE", f"/queries/{created['id']}")[0] == 404


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"text": ""}, "at least 1 character"),  # the schema says so (minLength)
        ({"text": "   "}, "empty"),  # blank once trimmed: the registry says so
        ({"text": "a\x00b"}, "control character"),
        ({"text": "x" * 501}, "at most 500 characters"),
        ({"text": "ok", "threshold": 2}, "less than 1"),
        ({"text": "ok", "severity": "urgent"}, "pattern"),
        ({"text": "ok", "colour": "red"}, "Extra inputs are not permitted"),
        ({}, "Field required"),
    ],
)
def test_bad_payload_is_422_with_reason(api: Any, body: dict[str, Any], reason: str) -> None:
    status, answer = call(api[0], "POST", "/queries", body)
    assert status == 422
    assert reason in json.dumps(answer)
    assert api[1].list_queries() == []


def test_alerts_paged_and_filtered(api: Any) -> None:
    server, alerts = api[0], api[2]
    status, page = call(
        server, "GET", "/alerts?limit=1000&offset=5&camera=dock-1&query_id=3&since=10&until=20"
    )
    assert status == 200
    assert page["alerts"] == [{"alert_id": "a1", "camera": "dock-1"}]
    assert alerts.calls[-1] == {
        "limit": 50,
        "offset": 5,
        "camera": "dock-1",
        "query_id": 3,
        "since": 10.0,
        "until": 20.0,
    }
    assert call(server, "GET", "/alerts?limit=0")[0] == 422


def test_evidence_files_and_no_traversal(api: Any) -> None:
    server = api[0]
    status, body = call(server, "GET", "/alerts/a1/evidence/crop.jpg")
    assert status == 200 and body == b"\xff\xd8jpeg"
    assert call(server, "GET", "/alerts/a1/evidence/missing.jpg")[0] == 404
    assert call(server, "GET", "/alerts/..%2F/evidence/secret.txt")[0] == 404
    assert call(server, "GET", "/alerts/a1/evidence/..%2F..%2Fsecret.txt")[0] == 404


def test_metrics_and_openapi(api: Any) -> None:
    server = api[0]
    status, body = call(server, "GET", "/metrics")
    assert status == 200 and b'watchword_frames_total{camera="dock-1"} 12' in body
    assert call(server, "GET", "/openapi.json", token=None)[0] == 401
    status, schema = call(server, "GET", "/openapi.json")
    assert status == 200
    assert {"/queries", "/alerts", "/health", "/livez", "/metrics", "/dead-letters"} <= set(schema["paths"])
    # The schema documents what the server answers besides success.
    assert {"401", "413", "422"} <= set(schema["paths"]["/queries"]["post"]["responses"])
    assert "404" in schema["paths"]["/queries/{query_id}"]["get"]["responses"]
    assert "503" in schema["paths"]["/health"]["get"]["responses"]
    # No interactive pages that would load their scripts from a CDN.
    assert call(server, "GET", "/docs")[0] == 404
    assert call(server, "GET", "/redoc")[0] == 404
