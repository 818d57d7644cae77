"""Two agents on one state directory: the second exits 2 naming the first, and touches nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.detection.ssd import MODEL_DIR_NAME
from agent.state_lock import LOCK_NAME
from engines.manifest import MANIFEST_NAME
from tests.reliability.agent_process import AgentProcess, digest, watchword


def _wait_for_file(path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written within {timeout_s} s"
        time.sleep(0.05)


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "site.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "cameras:\n  - {id: live, uri: 'test://?fps=5&width=160&height=120'}\n"
        "alerts:\n  sinks:\n    - {type: jsonl, path: " + str(tmp_path / "alerts.jsonl") + "}\n"
    )
    return config


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
        # the first's detector converted the SSD on its first start
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

        # Editing queries beside the running agent keeps working.
        added = watchword("query", "add", "a person falling down", "--config", str(config), cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        listed = watchword("query", "list", "--config", str(config), cwd=tmp_path)
        assert listed.returncode == 0 and "a person falling down" in listed.stdout
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
