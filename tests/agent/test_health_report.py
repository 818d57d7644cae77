"""``/health``'s storage on real filesystems: the free bytes are those of the filesystem that holds
the alerts database and the evidence (a small tmpfs here, filled up), not only the state folder's."""

from __future__ import annotations

from pathlib import Path

from agent.config import parse_config
from agent.service import Agent
from tests.fixtures.small_fs import fill, small_tmpfs


def test_storage_free_bytes_are_those_of_the_full_alerts_disk(tmp_path: Path, ssd_model_dir: Path) -> None:
    with small_tmpfs(tmp_path / "alerts-disk", "2m") as disk:
        config = parse_config(
            f"state_dir: {tmp_path / 'state'}\n"
            "cameras:\n  - {id: gate, uri: 'test://?fps=5&width=160&height=120'}\n"
            f"detector: {{type: ssd-mobilenet, model_dir: '{ssd_model_dir}'}}\n"
            f"alerts:\n  database: {disk / 'alerts.db'}\n  evidence_dir: {disk / 'evidence'}\n"
        )
        agent = Agent(config, duration_s=1)
        try:
            fill(disk / "filler.bin")
            storage = agent.health()["storage"]
        finally:
            agent.close()
    assert storage["free_bytes"] < 64 * 1024, storage  # the full disk, where the next alert goes
    by_name = {name: fs for fs in storage["filesystems"] for name in fs["holds"]}
    assert by_name.keys() == {"alerts.database", "alerts.evidence_dir", "state_dir"}
    assert by_name["alerts.database"] is by_name["alerts.evidence_dir"]
    assert by_name["alerts.database"]["total_bytes"] <= 2 * 1024 * 1024
    assert by_name["state_dir"]["free_bytes"] > 16 * 1024 * 1024  # the big one is reported apart
