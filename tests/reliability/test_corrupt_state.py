"""Source-of-truth state whose data is gone or damaged (the alert outbox, the query registry): the
start and the commands that read it refuse with one line and exit 2, and write nothing to it.

SQLite opens an empty file as a new database (the undelivered events would be dropped silently) and
reports a damaged page only when a statement reaches it (a traceback mid-start)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.alerts.outbox import Outbox
from agent.queries import QueryRegistry
from tests.reliability.agent_process import watchword

PAGE = 4096


def _damage(path: Path, how: str) -> None:
    """``empty``: truncate to 0 bytes; ``pages``: keep the header page, random bytes after it."""
    if how == "empty":
        path.write_bytes(b"")
        return
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * PAGE
    data[PAGE:] = np.random.default_rng(7).integers(0, 256, len(data) - PAGE, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _files(path: Path) -> dict[str, str]:
    """sha256 of the database and of any non-empty write-ahead log beside it (not the shared-memory
    index, which readers update)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.parent.glob(path.name + "*"))
        if p.is_file() and not p.name.endswith("-shm") and (p == path or p.stat().st_size > 0)
    }


def _one_line_exit_2(result: object, *needles: str) -> None:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 2, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, stderr


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "site.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "cameras:\n  - {id: gate, uri: 'test://?fps=5&width=160&height=120'}\n"
        "alerts:\n  sinks:\n    - {type: webhook, url: 'http://127.0.0.1:9/hook'}\n"
    )
    return config


@pytest.mark.parametrize(("how", "reason"), [("pages", "is damaged"), ("empty", "is empty (0 bytes)")])
def test_a_damaged_or_empty_alerts_database_stops_the_start_and_stays_as_it_is(
    tmp_path: Path, how: str, reason: str
) -> None:
    database = tmp_path / "state" / "alerts.db"
    outbox = Outbox(database)
    for n in range(300):  # undelivered events, a few dozen pages of them
        payload = {"alert_id": f"a{n}", "seq": 0, "event": "opened", "camera": "gate", "query_id": 1}
        outbox.enqueue(
            {**payload, "track_id": n, "started_at": 1e9, "pad": "x" * 300}, ["webhook"], created_at=1e9
        )
    outbox.close()
    _damage(database, how)
    before = _files(database)

    run = watchword("run", str(_config(tmp_path)), "--duration", "3", cwd=tmp_path)
    _one_line_exit_2(run, "alerts.database", str(database), reason, "nothing was changed")
    listed = watchword("alerts", "dead-letters", "--db", str(database), cwd=tmp_path)
    _one_line_exit_2(listed, str(database), reason)
    assert _files(database) == before  # nothing written to it, no new history started in it


@pytest.mark.parametrize(("how", "reason"), [("pages", "is damaged"), ("empty", "is empty (0 bytes)")])
def test_a_damaged_or_empty_query_database_stops_the_start_and_stays_as_it_is(
    tmp_path: Path, how: str, reason: str
) -> None:
    database = tmp_path / "state" / "watchword.db"
    registry = QueryRegistry(database)
    for n in range(200):
        registry.add(f"a person doing thing number {n} " + "x" * 200)
    registry.close()
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _damage(database, how)
    before = _files(database)

    for args in (("list",), ("show", "1"), ("add", "a person falling")):
        _one_line_exit_2(watchword("query", *args, "--db", str(database), cwd=tmp_path), reason)
    run = watchword("run", str(_config(tmp_path)), "--duration", "3", cwd=tmp_path)
    _one_line_exit_2(run, "database", str(database), reason)
    assert _files(database) == before
