"""Zone geometry and config: the even-odd point test, foot points, strict YAML/JSON zones, the
registry's zones column (migration keeps existing queries) and `watchword query add --zone`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.api.app import ApiContext, create_app
from agent.api.server import ApiServer
from agent.cameras.store import CameraStore
from agent.queries import QueryError, QueryRegistry, QueryUpdate
from agent.sources.config import CameraConfig
from agent.zones import foot_point, inside
from tests.agent.api.test_api import TOKEN, call

SQUARE = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]


def test_inside_even_odd_and_foot_point() -> None:
    assert inside(SQUARE, 0.5, 0.5)
    assert not inside(SQUARE, 0.1, 0.5)
    assert not inside(SQUARE, 0.5, 0.9)
    concave: list[list[float]] = [[0, 0], [1, 0], [1, 1], [0.5, 0.3], [0, 1]]  # a notch from the bottom
    assert inside(concave, 0.2, 0.3) and not inside(concave, 0.5, 0.8)
    assert foot_point((100, 20, 140, 200), 400, 200) == (0.3, 1.0)


def test_camera_zones_are_strict() -> None:
    camera = CameraConfig.model_validate(
        {"id": "cam", "uri": "test://ball", "zones": [{"name": "door", "points": SQUARE}]}
    )
    assert camera.zones[0].points == SQUARE
    assert CameraConfig.model_validate_json(camera.model_dump_json()) == camera
    for zones, words in (
        ([{"name": "door", "points": [[0, 0], [640, 0], [0, 1]]}], "not pixels"),
        ([{"name": "door", "points": [[0, 0], [1, 0]]}], "at least 3"),
        ([{"name": "door", "points": [[0, 0, 1], [1, 0], [1, 1]]}], r"must be \[x, y\]"),
        ([{"name": "door", "points": SQUARE}, {"name": "door", "points": SQUARE}], "unique"),
        ([{"name": "door", "points": SQUARE, "colour": "red"}], "Extra inputs"),
        ([{"name": "the door", "points": SQUARE}], "pattern"),
    ):
        with pytest.raises(ValidationError, match=words):
            CameraConfig.model_validate({"id": "cam", "uri": "test://ball", "zones": zones})


def test_registry_zones_and_migration_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    registry = QueryRegistry(path)
    old = registry.add("a person loitering")
    registry.close()
    # make it a schema-3 file (before zones): drop the column as an older watchword had it
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE queries DROP COLUMN zones")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    registry = QueryRegistry(path)
    assert registry.get(old.id).zones is None and registry.get(old.id).text == "a person loitering"
    query = registry.add("a person loitering", zones=["entrance", "door", "door"])
    assert query.zones == ["door", "entrance"] and query.to_dict()["zones"] == ["door", "entrance"]
    assert registry.update(query.id, QueryUpdate(zones=["yard"])).zones == ["yard"]
    assert registry.update(query.id, QueryUpdate(clear_zones=True)).zones is None
    with pytest.raises(QueryError, match="zone name"):
        registry.add("x", zones=["the door"])
    registry.close()


def test_cli_query_add_zone(tmp_path: Path) -> None:
    database = tmp_path / "w.db"
    store = CameraStore(database)  # the agent keeps its cameras in the same database
    store.add({"id": "cam", "uri": "test://ball", "zones": [{"name": "entrance", "points": SQUARE}]})
    store.close()
    run = [sys.executable, "-m", "agent.cli", "query"]
    added = subprocess.run(
        [*run, "add", "a person loitering", "--zone", "entrance", "--db", str(database)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "added query" in added.stdout and "warning" not in added.stderr
    # a zone no camera has yet is kept (the operator may draw it next), with a warning naming it
    unknown = subprocess.run(
        [*run, "add", "a person loitering", "--zone", "yard", "--zone", "entrance", "--db", str(database)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "added query" in unknown.stdout
    assert "warning: zone 'yard' is on no camera yet" in unknown.stderr
    assert "'entrance'" not in unknown.stderr
    listed = subprocess.run(
        [*run, "list", "--db", str(database)], capture_output=True, text=True, check=True, timeout=60
    )
    assert "zones=entrance" in listed.stdout and "zones=entrance,yard" in listed.stdout


def test_api_keeps_an_unknown_zone_and_warns(tmp_path: Path) -> None:
    """POST/PATCH /queries (real server, real camera store): a zone no camera has is kept and named in
    ``warnings``; a zone a camera has gives none; the console's later drawing clears it."""
    registry = QueryRegistry(tmp_path / "w.db")
    store = CameraStore(tmp_path / "w.db")
    store.add({"id": "cam", "uri": "test://ball", "zones": [{"name": "door", "points": SQUARE}]})
    context = ApiContext(
        registry=registry,
        token=TOKEN,
        health=lambda: {"status": "ok"},
        metrics=lambda: "",
        cameras=lambda: frozenset(c.id for c in store.list_cameras()),
        zone_names=lambda: frozenset(z.name for c in store.list_cameras() for z in c.zones),
    )
    server = ApiServer(create_app(context), "127.0.0.1", 0)
    server.start()
    try:
        code, body = call(
            server, "POST", "/queries", {"text": "a person loitering", "zones": ["yard", "door"]}
        )
        assert code == 201 and body["zones"] == ["door", "yard"], body
        assert len(body["warnings"]) == 1 and "'yard' is on no camera yet" in body["warnings"][0]
        assert registry.get(body["id"]).zones == ["door", "yard"], "kept all the same"
        code, known = call(server, "POST", "/queries", {"text": "a person loitering", "zones": ["door"]})
        assert code == 201 and "warnings" not in known
        code, listed = call(server, "GET", f"/queries/{body['id']}")
        assert code == 200 and "warnings" not in listed, "only on add and change"
        code, patched = call(server, "PATCH", f"/queries/{known['id']}", {"zones": ["gate"]})
        assert code == 200 and "'gate'" in patched["warnings"][0]
        store.update("cam", {"zones": [{"name": "gate", "points": SQUARE}]})
        code, patched = call(server, "PATCH", f"/queries/{known['id']}", {"zones": ["gate"]})
        assert code == 200 and "warnings" not in patched
    finally:
        server.stop()
        store.close()
        registry.close()
