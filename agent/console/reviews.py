"""Operator review of alerts: acknowledge, resolve, true / false alarm.

Marks are stored in the alerts database beside the alert history (their own table), returned with
every alert by the API, and written into the alert's evidence folder as ``review.json`` (the alert
manager rewrites ``evidence.json`` on every update, so the review keeps its own file). A false-alarm
mark hands the track's crop embeddings to the negative exemplars of that query on that camera.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from agent.alerts.evidence import EvidenceError, _write_atomic

log = logging.getLogger(__name__)

REVIEW_FILE = "review.json"
Action = Literal["acknowledge", "resolve", "true_alarm", "false_alarm", "reopen", "note"]
_STATE = {"acknowledge": "acknowledged", "resolve": "resolved", "reopen": "new"}
_VERDICT = {"true_alarm": "true", "false_alarm": "false"}

_SCHEMA = """CREATE TABLE IF NOT EXISTS alert_reviews (
    alert_id TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'new',
    verdict TEXT,
    note TEXT,
    camera TEXT,
    query_id INTEGER,
    score REAL,
    history TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL
)"""


class ReviewError(ValueError):
    """A mark that cannot be applied (unknown alert); the message says why."""


class ReviewStore:
    """Review marks of alerts, in the alerts database.

    Args:
        database: the alerts database file (the outbox's).
        evidence_dir: the evidence folder (``review.json`` goes into each alert's bundle).
        on_false_alarm: called with the alert's latest payload when it is marked a false alarm.
        on_unmarked_false: called with the alert id when a false-alarm mark is changed to true.
    """

    def __init__(
        self,
        database: Path,
        evidence_dir: Path | None,
        *,
        on_false_alarm: Callable[[dict[str, Any]], None] | None = None,
        on_unmarked_false: Callable[[str], object] | None = None,
    ) -> None:
        self.evidence_dir = evidence_dir
        self.on_false_alarm = on_false_alarm
        self.on_unmarked_false = on_unmarked_false
        self._lock = threading.Lock()
        self._db = sqlite3.connect(database, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def latest(self, alert_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT payload FROM alerts WHERE alert_id = ? ORDER BY seq DESC LIMIT 1", (alert_id,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def get(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alert_reviews WHERE alert_id = ?", (alert_id,)).fetchone()
        return None if row is None else _review(row)

    def attach(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each alert with its ``review`` (state "new", no verdict, when never marked)."""
        ids = [a["alert_id"] for a in alerts if "alert_id" in a]
        found: dict[str, dict[str, Any]] = {}
        if ids:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT * FROM alert_reviews WHERE alert_id IN ({','.join('?' * len(ids))})", ids
                ).fetchall()
            found = {row["alert_id"]: _review(row) for row in rows}
        for alert in alerts:
            alert["review"] = found.get(alert.get("alert_id", ""), _blank())
        return alerts

    def mark(
        self, alert_id: str, action: Action, note: str | None = None, by: str = "console"
    ) -> dict[str, Any]:
        """Apply one action; returns the review. Raises :class:`ReviewError` for an unknown alert."""
        payload = self.latest(alert_id)
        if payload is None:
            raise ReviewError(f"no alert with id {alert_id!r}")
        now = time.time()
        with self._lock:
            row = self._db.execute("SELECT * FROM alert_reviews WHERE alert_id = ?", (alert_id,)).fetchone()
            review = _review(row) if row is not None else _blank()
            was_false = review["verdict"] == "false"
            if action in _STATE:
                review["state"] = _STATE[action]
            elif action in _VERDICT:  # "note" changes neither state nor verdict
                review["verdict"] = _VERDICT[action]
                if review["state"] == "new":
                    review["state"] = "acknowledged"
            if note is not None:
                review["note"] = note
            review["history"].append({"action": action, "at": round(now, 3), "by": by, "note": note})
            review["updated_at"] = now
            self._db.execute(
                """INSERT OR REPLACE INTO alert_reviews
                   (alert_id, state, verdict, note, camera, query_id, score, history, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    alert_id,
                    review["state"],
                    review["verdict"],
                    review["note"],
                    payload.get("camera"),
                    payload.get("query_id"),
                    payload.get("peak_score", payload.get("score")),
                    json.dumps(review["history"]),
                    now,
                ),
            )
        self._export(alert_id, review)
        if action == "false_alarm" and not was_false and self.on_false_alarm is not None:
            self.on_false_alarm(payload)
        if action == "true_alarm" and was_false and self.on_unmarked_false is not None:
            self.on_unmarked_false(alert_id)
        return review

    def marked(self) -> list[dict[str, Any]]:
        """Every alert with a verdict: alert_id, camera, query_id, score, verdict (for calibration)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT alert_id, camera, query_id, score, verdict FROM alert_reviews"
                " WHERE verdict IS NOT NULL"
            ).fetchall()
        return [dict(row) for row in rows]

    def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        """Per sink and event: delivery state, attempts, last error and time delivered."""
        with self._lock:
            rows = self._db.execute(
                """SELECT a.seq, a.event, d.sink, d.state, d.attempts, d.last_error, d.delivered_at
                   FROM deliveries d JOIN alerts a ON a.id = d.event_row
                   WHERE a.alert_id = ? ORDER BY a.seq, d.sink""",
                (alert_id,),
            ).fetchall()
        return [dict(row) for row in rows]

    def _export(self, alert_id: str, review: dict[str, Any]) -> None:
        if self.evidence_dir is None:
            return
        folder = self.evidence_dir / alert_id
        if not folder.is_dir():
            return
        try:
            _write_atomic(folder / REVIEW_FILE, json.dumps(review, indent=2).encode())
        except (OSError, EvidenceError) as exc:
            log.error("alert %s: review not written to the evidence: %s", alert_id, exc)


def _blank() -> dict[str, Any]:
    return {"state": "new", "verdict": None, "note": None, "history": [], "updated_at": None}


def _review(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "state": row["state"],
        "verdict": row["verdict"],
        "note": row["note"],
        "history": json.loads(row["history"]),
        "updated_at": row["updated_at"],
    }
