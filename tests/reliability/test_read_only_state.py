"""Commands that only read (``query list``/``show``, ``camera list``, ``alerts dead-letters``) work on
a state folder this process cannot write: a real read-only mount (a tmpfs remounted ``ro``) after a
clean stop, and a read-only bind mount of a folder an agent is writing, its changes still in the
write-ahead log. Commands that write refuse with one line and exit 2."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.alerts.outbox import Outbox
from agent.cameras import CameraStore
from agent.queries import QueryRegistry
from tests.fixtures.small_fs import small_tmpfs
from tests.reliability.agent_process import watchword


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} failed (needs root): {done.stderr.strip()}")


@contextmanager
def _read_only_view(folder: Path, view: Path) -> Iterator[Path]:
    """``view``: ``folder`` bind-mounted read-only (the writer keeps writing ``folder``)."""
    view.mkdir()
    _mount("--bind", str(folder), str(view))
    try:
        _mount("-o", "remount,ro,bind", str(view))
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)


def _state(folder: Path) -> None:
    """Two queries, a camera and a dead-lettered alert event, written as the agent writes them."""
    registry = QueryRegistry(folder / "watchword.db")
    registry.add("a person falling down")
    registry.add("someone climbing the fence", cameras=["gate"])
    registry.close()
    cameras = CameraStore(folder / "watchword.db")
    cameras.add({"id": "gate", "uri": "rtsp://user:secret@cam.local/stream"})
    cameras.close()
    outbox = Outbox(folder / "alerts.db")
    payload = {"alert_id": "a1", "seq": 0, "event": "opened", "camera": "gate", "query_id": 1}
    outbox.enqueue({**payload, "track_id": 4, "started_at": 1e9}, ["hook"], created_at=1e9)
    pending = outbox.next_pending("hook")
    assert pending is not None
    outbox.mark_failed_attempt(pending, "HTTP 410 Gone", next_attempt_at=1e9, give_up=True)
    outbox.close()


def _reads_work(folder: Path, cwd: Path) -> None:
    db = str(folder / "watchword.db")
    listed = watchword("query", "list", "--db", db, cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    assert "a person falling down" in listed.stdout and "someone climbing the fence" in listed.stdout
    shown = watchword("query", "show", "2", "--db", db, cwd=cwd)
    assert shown.returncode == 0 and '"cameras": [\n    "gate"' in shown.stdout, shown.stderr
    cameras = watchword("camera", "list", "--db", db, cwd=cwd)
    assert cameras.returncode == 0 and "gate" in cameras.stdout and "secret" not in cameras.stdout, cameras
    letters = watchword("alerts", "dead-letters", "--db", str(folder / "alerts.db"), cwd=cwd)
    assert letters.returncode == 0 and "a1/0" in letters.stdout and "HTTP 410" in letters.stdout, letters


def test_read_commands_work_on_a_read_only_mount_and_writes_refuse_in_one_line(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "state", "8m") as state:
        _state(state)
        assert sorted(p.name for p in state.iterdir()) == ["alerts.db", "watchword.db"]  # stopped cleanly
        _mount("-o", "remount,ro", str(state))
        _reads_work(state, tmp_path)
        for args in (("query", "add", "a person running"), ("camera", "rm", "gate")):
            refused = watchword(*args, "--db", str(state / "watchword.db"), cwd=tmp_path)
            assert refused.returncode == 2, refused.stderr
            assert "Traceback" not in refused.stderr and "watchword.db" in refused.stderr
        assert sorted(p.name for p in state.iterdir()) == ["alerts.db", "watchword.db"]


def test_read_commands_see_what_a_running_writer_has_only_in_its_log(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    _state(folder)
    writer = QueryRegistry(folder / "watchword.db")  # the agent: its connection stays open
    writer._sqlite.connect().execute("PRAGMA wal_autocheckpoint = 0")  # changes stay in the log
    writer.add("a third query, only in the log so far")
    try:
        assert (folder / "watchword.db-wal").stat().st_size > 0
        with _read_only_view(folder, tmp_path / "view") as view:
            _reads_work(view, tmp_path)
            listed = watchword("query", "list", "--db", str(view / "watchword.db"), cwd=tmp_path)
            assert "a third query, only in the log so far" in listed.stdout
    finally:
        writer.close()
