"""Two agents on one state: the second exits 2 naming the first, and touches nothing, whatever path
(its own state_dir with paths into the first's folder, a symlink, a bind mount) reaches the state,
and also after the lock file was deleted."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from agent.config import load_config, parse_config
from agent.detection.ssd import MODEL_DIR_NAME
from agent.state_lock import LOCK_NAME, StateLockError, lock_agent_state
from engines.manifest import MANIFEST_NAME
from tests.reliability.agent_process import AgentProcess, LockHolder, digest, watchword


def _wait_for_file(path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written within {timeout_s} s"
        time.sleep(0.05)


def _config(tmp_path: Path, name: str = "site.yaml", state: str = "state", **paths: Path) -> Path:
    """A site config with ``state_dir`` ``tmp_path/state``; ``paths``: database, alerts_database and
    evidence_dir set explicitly."""
    config = tmp_path / name
    text = f"state_dir: {tmp_path / state}\n"
    if "database" in paths:
        text += f"database: {paths['database']}\n"
    text += "cameras:\n  - {id: live, uri: 'test://?fps=5&width=160&height=120'}\n"
    text += "alerts:\n  sinks:\n    - {type: jsonl, path: " + str(tmp_path / f"{name}.jsonl") + "}\n"
    if "alerts_database" in paths:
        text += f"  database: {paths['alerts_database']}\n"
    if "evidence_dir" in paths:
        text += f"  evidence_dir: {paths['evidence_dir']}\n"
    config.write_text(text)
    return config


def _refused_by(config: Path, pid: int) -> str:
    """Try to take ``config``'s lock here; return the refusal, which must name ``pid``."""
    with pytest.raises(StateLockError) as refused:
        lock_agent_state(load_config(config)).release()
    assert f"pid {pid}" in str(refused.value)
    return str(refused.value)


def test_paths_into_a_running_agents_folder_meet_its_lock(tmp_path: Path) -> None:
    first = _config(tmp_path)
    state = tmp_path / "state"
    with LockHolder(first, tmp_path) as holder:
        before = digest(state)
        # Another state_dir with the first's files: each of the three paths alone is refused.
        for key, path in (
            ("database", state / "watchword.db"),
            ("alerts_database", state / "alerts.db"),
            ("evidence_dir", state / "evidence"),
        ):
            other = _config(tmp_path, f"{key}.yaml", f"other-{key}", **{key: path})
            assert f"{state}" in _refused_by(other, holder.pid)
        # The same folder through a symlink and through ".."
        (tmp_path / "link").symlink_to(state)
        _refused_by(_config(tmp_path, "symlink.yaml", "link"), holder.pid)
        _refused_by(_config(tmp_path, "dotdot.yaml", "link/../state/evidence/.."), holder.pid)
        assert digest(state) == before  # the refused ones wrote nothing there
    # Once the first agent is gone, the others may start.
    lock_agent_state(load_config(tmp_path / "database.yaml")).release()


def test_deleting_the_lock_file_does_not_unlock_the_state(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with LockHolder(config, tmp_path) as holder:
        assert (tmp_path / "state" / LOCK_NAME).read_text().strip() == str(holder.pid)
        (tmp_path / "state" / LOCK_NAME).unlink()
        _refused_by(config, holder.pid)


def test_a_bind_mount_of_the_state_folder_meets_the_same_lock(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "state").mkdir()
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "--bind", str(tmp_path / "state"), str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mount --bind needs root: {done.stderr.decode().strip()}")
    try:
        with LockHolder(config, tmp_path) as holder:
            _refused_by(_config(tmp_path, "bind.yaml", "mnt"), holder.pid)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_one_agent_with_all_paths_in_one_folder_locks_it_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = load_config(_config(tmp_path, database=state / "q.db", evidence_dir=state))
    lock = lock_agent_state(config)
    try:
        with pytest.raises(StateLockError, match="in use by another running agent"):
            lock_agent_state(config)  # a second lock, even in this process, is refused
    finally:
        lock.release()
    lock_agent_state(config).release()


def test_state_paths_derive_from_state_dir_unless_set(tmp_path: Path) -> None:
    config = parse_config(f"state_dir: {tmp_path}/s\ncameras: [{{id: a, uri: 'test://'}}]\n")
    assert config.database == tmp_path / "s" / "watchword.db"
    assert config.alerts.database == tmp_path / "s" / "alerts.db"
    assert config.alerts.evidence_dir == tmp_path / "s" / "evidence"
    config = parse_config(
        f"state_dir: /data\ndatabase: {tmp_path}/q.db\ncameras: [{{id: a, uri: 'test://'}}]\n"
        f"alerts: {{evidence_dir: {tmp_path}/ev}}\n"
    )
    assert config.database == tmp_path / "q.db"
    assert config.alerts.database == Path("/data/alerts.db")
    assert config.alerts.evidence_dir == tmp_path / "ev"


@pytest.mark.slow
def test_a_second_agent_on_the_same_state_exits_2_naming_the_first(tmp_path: Path) -> None:
    config = _config(tmp_path)
    state = tmp_path / "state"
    first = AgentProcess(config, tmp_path)
    try:
        first.wait_for("alerts: started")
        # the first's detector converted the SSD on its first start, and its engine is ready: the
        # caches it writes while loading (the optimised graph, the manifest's stamp) are written
        first.wait_for(") ready: build")
        _wait_for_file(state / "models" / MODEL_DIR_NAME / MANIFEST_NAME)
        assert (state / LOCK_NAME).read_text().strip() == str(first.pid)
        before = digest(state, skip=frozenset({LOCK_NAME}))
        assert "alerts.db" in before

        second = watchword("run", str(config), "--duration", "5", cwd=tmp_path, timeout_s=60)
        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert digest(state, skip=frozenset({LOCK_NAME})) == before  # the second touched nothing
        assert (state / LOCK_NAME).read_text().strip() == str(first.pid)

        # Its own state_dir with the three paths in the first's folder: refused, nothing touched.
        into = _config(
            tmp_path,
            "into.yaml",
            "other",
            database=state / "watchword.db",
            alerts_database=state / "alerts.db",
            evidence_dir=state / "evidence",
        )
        into_run = watchword("run", str(into), "--duration", "5", cwd=tmp_path, timeout_s=60)
        assert into_run.returncode == 2, into_run.stderr
        assert f"pid {first.pid}" in into_run.stderr and "Traceback" not in into_run.stderr
        assert digest(state, skip=frozenset({LOCK_NAME})) == before

        # Editing queries beside the running agent keeps working.
        added = watchword("query", "add", "a person falling down", "--config", str(config), cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        listed = watchword("query", "list", "--config", str(config), cwd=tmp_path)
        assert listed.returncode == 0 and "a person falling down" in listed.stdout
        assert first.process.poll() is None

        # Deleting the lock file frees nothing: the lock is on the folder.
        (state / LOCK_NAME).unlink()
        after_delete = watchword("run", str(config), "--duration", "5", cwd=tmp_path, timeout_s=60)
        assert after_delete.returncode == 2, after_delete.stderr
        assert f"pid {first.pid}" in after_delete.stderr
        assert first.process.poll() is None
    finally:
        code, _ = first.terminate()
    assert code == 0, first.output()
    # Once the first is gone the lock is free again (the kernel drops it even after SIGKILL).
    third = AgentProcess(config, tmp_path, "--duration", "2")
    try:
        third.wait_for("alerts: started")
    finally:
        third.kill()
