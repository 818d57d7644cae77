"""The query registry: CRUD, validation, schema version, change revision, and the CLI on the same file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.queries import QueryError, QueryNotFoundError, QueryRegistry, QueryUpdate, validate_query_text
from agent.queries.registry import SCHEMA_VERSION


def test_crud_and_revision(tmp_path: Path) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    start = registry.revision()
    query = registry.add("  a person falling down ", cameras=["b", "a", "a"], severity="critical")
    assert query.text == "a person falling down"
    assert query.cameras == ["a", "b"]
    assert query.threshold is None and query.enabled
    assert registry.revision() > start

    updated = registry.update(query.id, QueryUpdate(threshold=0.7, cooldown_s=5))
    assert updated.threshold == 0.7 and updated.threshold_source == "manual" and updated.cooldown_s == 5
    assert updated.updated_at >= query.updated_at
    cleared = registry.update(query.id, QueryUpdate(clear_threshold=True, clear_cameras=True))
    assert cleared.threshold is None and cleared.cameras is None

    before = registry.revision()
    registry.set_enabled(query.id, False)
    assert registry.revision() > before
    assert registry.list_queries(enabled_only=True) == []
    assert [q.id for q in registry.list_queries()] == [query.id]

    registry.remove(query.id)
    with pytest.raises(QueryNotFoundError):
        registry.get(query.id)
    with pytest.raises(QueryNotFoundError):
        registry.remove(query.id)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("x" * 501, "limit is 500"),
        ("a person\x07 falling", "control character"),
        ("zero\u200bwidth", "control character"),
    ],
)
def test_text_validation(text: str, reason: str) -> None:
    with pytest.raises(QueryError, match=reason):
        validate_query_text(text)


def test_other_validation(tmp_path: Path) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    assert validate_query_text("x" * 500) == "x" * 500
    with pytest.raises(QueryError, match="severity"):
        registry.add("a person running", severity="urgent")
    with pytest.raises(QueryError, match="threshold"):
        registry.add("a person running", threshold=1.5)
    with pytest.raises(QueryError, match="camera"):
        registry.add("a person running", cameras=[" "])
    assert registry.list_queries() == []


def test_schema_versioned_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    QueryRegistry(path).add("a person running")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(QueryError, match="newer than this watchword"):
        QueryRegistry(path)


def test_embedding_cache_keyed_by_model_and_text(tmp_path: Path) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    query = registry.add("a person running")
    vector = np.arange(8, dtype=np.float32)
    registry.store_embedding(query.id, "model-a", "text-1", vector)
    cached = registry.cached_embedding(query.id, "model-a", "text-1")
    assert cached is not None
    np.testing.assert_array_equal(cached, vector)
    assert registry.cached_embedding(query.id, "model-b", "text-1") is None
    assert registry.cached_embedding(query.id, "model-a", "text-2") is None
    registry.remove(query.id)
    assert registry.cached_embedding(query.id, "model-a", "text-1") is None


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_crud_on_the_agents_database(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    added = _cli(
        "query",
        "add",
        "a person falling down",
        "--camera",
        "dock-1",
        "--severity",
        "critical",
        "--threshold",
        "0.7",
        "--db",
        str(db),
    )
    assert added.returncode == 0, added.stderr
    assert "added query 1" in added.stdout

    registry = QueryRegistry(db)  # what the running agent would read
    query = registry.get(1)
    assert (query.text, query.cameras, query.severity, query.threshold) == (
        "a person falling down",
        ["dock-1"],
        "critical",
        0.7,
    )

    listed = _cli("query", "list", "--db", str(db))
    assert "a person falling down" in listed.stdout and "dock-1" in listed.stdout
    shown = _cli("query", "show", "1", "--db", str(db))
    assert '"severity": "critical"' in shown.stdout

    assert _cli("query", "disable", "1", "--db", str(db)).returncode == 0
    assert registry.get(1).enabled is False
    assert _cli("query", "enable", "1", "--db", str(db)).returncode == 0
    assert registry.get(1).enabled is True

    bad = _cli("query", "add", "bad\x01text", "--db", str(db))
    assert bad.returncode == 2 and "control character" in bad.stderr
    missing = _cli("query", "rm", "99", "--db", str(db))
    assert missing.returncode == 1 and "no query with id 99" in missing.stderr

    assert _cli("query", "rm", "1", "--db", str(db)).returncode == 0
    assert registry.list_queries() == []


def test_cli_takes_database_from_config(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    db = tmp_path / "from-config.db"
    config.write_text(f"database: {db}\ncameras:\n  - id: a\n    uri: test://\n")
    result = _cli("query", "add", "a person running", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert QueryRegistry(db).get(1).text == "a person running"


def test_a_query_without_its_own_cooldown_uses_the_agents(tmp_path: Path) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    query = registry.add("a person falling down")
    assert query.cooldown_s is None and query.to_dict()["cooldown_s"] is None
    assert registry.update(query.id, QueryUpdate(cooldown_s=3600)).cooldown_s == 3600
    assert registry.update(query.id, QueryUpdate(clear_cooldown=True)).cooldown_s is None
    assert registry.add("a person running", cooldown_s=0).cooldown_s == 0


def test_a_version_1_database_keeps_its_cooldowns(tmp_path: Path) -> None:
    from agent.queries.registry import _migration_1

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        _migration_1(db)
        db.execute(
            "INSERT INTO queries (text, cooldown_s, created_at, updated_at)"
            " VALUES ('a person falling', 30, 1, 1)"
        )
        db.execute("PRAGMA user_version = 1")
    registry = QueryRegistry(path)
    assert [q.cooldown_s for q in registry.list_queries()] == [30.0]
    assert registry.add("a person running").cooldown_s is None
