"""Bad input as a new user types it: one line naming what is wrong and exit 2, never a traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agent.alerts.outbox import Outbox
from tests.reliability.agent_process import watchword

CAMERA = "cameras:\n  - {id: gate, uri: 'test://?fps=5'}\n"


def _one_line_error(result: object, *needles: str) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 2, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    for needle in needles:
        assert needle in stderr, stderr


def test_a_query_database_that_is_a_folder_or_not_sqlite(tmp_path: Path) -> None:
    folder = tmp_path / "queries.db"
    folder.mkdir()
    _one_line_error(watchword("query", "list", "--db", str(folder), cwd=tmp_path), "is a directory")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all, just text " * 100)
    for args in (("list",), ("add", "a person falling"), ("show", "1"), ("rm", "1"), ("enable", "1")):
        _one_line_error(watchword("query", *args, "--db", str(junk), cwd=tmp_path), "cannot use", "junk.db")
    config = tmp_path / "site.yaml"
    config.write_text(f"database: {junk}\nstate_dir: {tmp_path / 'state'}\n{CAMERA}")
    _one_line_error(watchword("run", str(config), "--duration", "1", cwd=tmp_path), "junk.db")


def test_an_alerts_database_from_a_newer_watchword(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Outbox(state / "alerts.db").close()
    with sqlite3.connect(state / "alerts.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    config = tmp_path / "site.yaml"
    config.write_text(f"state_dir: {state}\n{CAMERA}")
    _one_line_error(watchword("run", str(config), "--duration", "1", cwd=tmp_path), "schema version 99")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e12"])
def test_a_cooldown_that_is_not_a_finite_number_of_seconds(tmp_path: Path, value: str) -> None:
    result = watchword(
        "query", "add", "a person falling", "--cooldown", value, "--db", str(tmp_path / "q.db"), cwd=tmp_path
    )
    _one_line_error(result, "cooldown")


@pytest.mark.parametrize(
    ("camera", "reason"),
    [
        ("{id: a, uri: 'gopher://camera/1'}", "unsupported camera URI scheme 'gopher'"),
        ("{id: a, uri: 'rtsp:///stream'}", "names no host"),
        ("{id: a, uri: 'rtsp://cam/a b'}", "blanks"),
        ("{id: a, uri: 'rtsp://admin:hunter2@cam:99999/x'}", "malformed"),
        ("{id: a, uri: 'test://', analysis_fps: .inf}", "analysis_fps: Input should be a finite number"),
        ("{id: a, uri: 'test://', max_width: true}", "max_width: Input should be a valid integer"),
    ],
)
def test_camera_mistakes_stop_the_start_naming_file_line_and_key(
    tmp_path: Path, camera: str, reason: str
) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(f"site: s\ncameras:\n  - {camera}\n")
    result = watchword("run", str(config), cwd=tmp_path)
    _one_line_error(result, "site.yaml:3: cameras[0]", reason)
    assert "hunter2" not in result.stderr


def test_queries_naming_unknown_cameras(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n{CAMERA}")
    refused = watchword(
        "query", "add", "a person falling", "--camera", "gat", "--config", str(config), cwd=tmp_path
    )
    _one_line_error(refused, "unknown camera ids gat")
    accepted = watchword(
        "query", "add", "a person falling", "--camera", "gate", "--config", str(config), cwd=tmp_path
    )
    assert accepted.returncode == 0, accepted.stderr
    # Without a config the cameras cannot be checked: accepted, with a warning.
    warned = watchword(
        "query", "add", "x", "--camera", "anything", "--db", str(tmp_path / "q.db"), cwd=tmp_path
    )
    assert warned.returncode == 0 and "not checked" in warned.stderr


def test_query_text_with_emoji_sequences_is_ordinary_text(tmp_path: Path) -> None:
    text = "a person waving \U0001f9d1\u200d\U0001f9af with a cane \U0001f3f3\ufe0f\u200d\U0001f308"
    result = watchword("query", "add", text, "--db", str(tmp_path / "q.db"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = watchword("query", "list", "--json", "--db", str(tmp_path / "q.db"), cwd=tmp_path)
    assert [q["text"] for q in json.loads(shown.stdout)] == [text]
