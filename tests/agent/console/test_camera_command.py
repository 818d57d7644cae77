"""``watchword camera add|list|update|rm`` on the state database, and the sync that applies the
changes to a running pipeline (a recording host here; the live pipeline is tested with a real agent
in test_console_api.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cameras import CameraStore
from agent.cameras.sync import CameraSync
from agent.cli import main
from agent.sources.config import CameraConfig


class RecordingHost:
    """Records what the sync asks the pipeline to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def add_camera(self, camera: CameraConfig) -> None:
        self.calls.append(("add", camera.id))

    def remove_camera(self, camera_id: str) -> None:
        self.calls.append(("remove", camera_id))


def test_camera_commands_change_the_table_and_never_print_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "w.db")
    store = CameraStore(db)
    store.apply_config([CameraConfig(id="yard", uri="test://")])  # what a start does
    host = RecordingHost()
    sync = CameraSync(store, host, store.list_cameras())

    assert (
        main(["camera", "add", "door", "rtsp://admin:hunter2@10.0.0.5/live", "--fps", "5", "--db", db]) == 0
    )
    sync.poll()
    assert host.calls == [("add", "door")]
    assert main(["camera", "list", "--json", "--db", db]) == 0
    out = capsys.readouterr().out
    listed = {c["id"]: c for c in json.loads(out[out.index("[") :])}
    assert listed["door"]["uri"] == "rtsp://admin:***@10.0.0.5/live" and listed["door"]["analysis_fps"] == 5
    assert "hunter2" not in out

    assert main(["camera", "update", "door", "--disable", "--db", db]) == 0
    sync.poll()
    assert host.calls[-1] == ("remove", "door")
    assert store.get("door").uri.endswith("hunter2@10.0.0.5/live")  # the stored URI is kept
    assert main(["camera", "update", "yard", "--set", "loop=true", "--db", db]) == 0
    sync.poll()
    assert host.calls[-1] == ("add", "yard") and store.get("yard").loop is True  # replaced in place

    assert main(["camera", "rm", "yard", "--db", db]) == 0
    sync.poll()
    assert host.calls[-1] == ("remove", "yard")
    assert main(["camera", "rm", "yard", "--db", db]) == 1
    assert main(["camera", "add", "bad id", "test://", "--db", db]) == 2
    assert main(["camera", "add", "door", "test://", "--db", db]) == 2  # exists
    # the next start applies the YAML again: its camera comes back, the one added at run time stays
    applied = CameraStore(db).apply_config([CameraConfig(id="yard", uri="test://")])
    assert applied.added == ["yard"] and applied.runtime == ["door"]
