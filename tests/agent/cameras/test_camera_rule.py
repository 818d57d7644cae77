"""Where cameras live (README "Your cameras"): the YAML's ``cameras:`` win for the ids they list and
are applied at every start; cameras added at run time are kept. ``run``, ``query add --camera``,
``eval replay`` and ``calibrate`` follow the same rule."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cameras import CameraStore, read_stored_cameras, site_cameras
from agent.cameras.store import CONFIG, RUNTIME
from agent.cli import main
from agent.config import load_config
from agent.sources.config import CameraConfig

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
VTEST = DATA / "vtest.avi"  # 768x576
MEGAMIND = DATA / "Megamind.avi"  # 720x528
REPO = Path(__file__).resolve().parents[3]
needs_videos = pytest.mark.skipif(
    not (VTEST.is_file() and MEGAMIND.is_file()), reason="the sample videos (Debian opencv-doc) are missing"
)


def _watchword(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env=env,
    )


def test_the_yaml_wins_for_its_cameras_and_cameras_added_at_run_time_are_kept(tmp_path: Path) -> None:
    store = CameraStore(tmp_path / "w.db")
    yard = CameraConfig(id="yard", uri="test://", analysis_fps=5)
    first = store.apply_config([yard])
    assert first.added == ["yard"] and store.source_of("yard") == CONFIG
    store.add({"id": "door", "uri": "test://?fps=5"})
    assert store.source_of("door") == RUNTIME
    store.update("yard", {"analysis_fps": 2})  # a run-time change to a YAML camera ...

    # ... lasts until the next start: the YAML's entry (edited meanwhile) is applied again
    applied = store.apply_config([yard.model_copy(update={"analysis_fps": 3.0})])
    assert store.get("yard").analysis_fps == 3.0
    assert applied.replaced == {"yard": ["analysis_fps"]} and applied.runtime == ["door"]
    assert any("yard" in line and "analysis_fps" in line for line in applied.lines("site.yaml"))

    # a camera that left the YAML is removed; one the YAML now lists is taken over from run time
    applied = store.apply_config([CameraConfig(id="door", uri="test://?fps=7")])
    assert applied.removed == ["yard"] and "door" in applied.replaced
    assert [c.id for c in store.list_cameras()] == ["door"] and store.source_of("door") == CONFIG
    store.close()


def test_site_cameras_are_the_yamls_then_the_run_time_ones_read_without_writing(tmp_path: Path) -> None:
    config_path = tmp_path / "site.yaml"
    config_path.write_text(f"state_dir: {tmp_path}/state\ncameras:\n  - {{id: gate, uri: 'test://'}}\n")
    config = load_config(config_path)
    assert [c.id for c in site_cameras(config)] == ["gate"]
    assert not config.database.exists(), "reading the site's cameras creates no database"
    store = CameraStore(config.database)
    store.apply_config([CameraConfig(id="old", uri="test://")])  # an earlier YAML's camera
    store.add({"id": "door", "uri": "test://"})
    store.close()
    assert [c.id for c in site_cameras(config)] == ["gate", "door"]


def test_a_table_from_before_sources_keeps_seeded_cameras_as_the_yamls(tmp_path: Path) -> None:
    database = tmp_path / "w.db"
    with sqlite3.connect(database) as db:  # the schema and rows seed() and add() used to write
        db.executescript(
            "CREATE TABLE cameras (id TEXT PRIMARY KEY, config TEXT NOT NULL, created_at REAL NOT NULL,"
            " updated_at REAL NOT NULL);"
            "CREATE TABLE camera_meta (key TEXT PRIMARY KEY, value REAL NOT NULL);"
            "INSERT INTO camera_meta VALUES ('revision', 0), ('seeded', 100.5);"
        )
        for camera_id, created in (("yard", 100.5), ("door", 200.0)):
            camera = CameraConfig(id=camera_id, uri="test://").model_dump_json()
            db.execute("INSERT INTO cameras VALUES (?, ?, ?, ?)", (camera_id, camera, created, created))
    assert [s for _, s in read_stored_cameras(database) or []] == [RUNTIME, RUNTIME]  # read only
    reader = CameraStore(database, read_only=True)  # `camera list` where the folder is read only
    assert [(c.id, reader.source_of(c.id)) for c in reader.list_cameras()] == [
        ("yard", RUNTIME),
        ("door", RUNTIME),
    ]
    reader.close()
    store = CameraStore(database)
    assert (store.source_of("yard"), store.source_of("door")) == (CONFIG, RUNTIME)
    assert store.apply_config([]).removed == ["yard"]
    store.close()


def test_query_add_checks_cameras_against_the_site_with_config_or_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(f"state_dir: {tmp_path}/state\ncameras:\n  - {{id: gate, uri: 'test://'}}\n")
    db = str(tmp_path / "state" / "watchword.db")
    # before any start: --config knows the YAML's cameras, --db knows none and says so
    assert main(["query", "add", "a person running", "--camera", "gate", "--config", str(config)]) == 0
    assert main(["query", "add", "a person running", "--camera", "gaet", "--config", str(config)]) == 2
    assert "unknown camera ids gaet" in capsys.readouterr().err
    assert main(["query", "add", "a person running", "--camera", "gaet", "--db", db]) == 0
    assert "not checked" in capsys.readouterr().err

    store = CameraStore(db)
    store.apply_config(load_config(config).cameras)  # what a start does
    store.close()
    assert main(["camera", "add", "door", "test://", "--config", str(config)]) == 0
    # a camera added at run time is one of the site's, with --config as with --db
    assert main(["query", "add", "a person waving", "--camera", "door", "--config", str(config)]) == 0
    assert main(["query", "add", "a person waving", "--camera", "door", "--db", db]) == 0
    capsys.readouterr()
    assert main(["query", "add", "a person waving", "--camera", "dor", "--db", db]) == 2
    assert "unknown camera ids dor" in capsys.readouterr().err


def test_camera_update_of_a_yaml_camera_says_it_lasts_until_the_next_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "w.db")
    store = CameraStore(db)
    store.apply_config([CameraConfig(id="yard", uri="test://")])
    store.close()
    assert main(["camera", "add", "door", "test://", "--db", db]) == 0
    capsys.readouterr()
    assert main(["camera", "update", "door", "--fps", "2", "--db", db]) == 0
    assert "next start" not in capsys.readouterr().err
    assert main(["camera", "update", "yard", "--fps", "2", "--db", db]) == 0
    assert "lasts until the agent's next start" in capsys.readouterr().err
    assert main(["camera", "list", "--db", db]) == 0
    listing = capsys.readouterr().out
    assert "yard" in listing and "config" in listing and "runtime" in listing


@pytest.mark.slow
@needs_videos
def test_run_applies_an_edited_yaml_camera_at_the_next_start(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    body = f"state_dir: {tmp_path}/state\ncameras:\n  - {{id: cam, uri: '{{uri}}', analysis_fps: 5}}\n"
    frames = tmp_path / "frames.jsonl"
    sizes = []
    for video in (VTEST, MEGAMIND):  # the same camera id, its file changed in the YAML in between
        config.write_text(body.replace("{uri}", str(video)))
        result = _watchword("run", str(config), "--max-frames", "2", "--jsonl", str(frames), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        sizes.append({(r["width"], r["height"]) for r in map(json.loads, frames.read_text().splitlines())})
    assert sizes == [{(768, 576)}, {(720, 528)}]
    assert "camera cam: the config's entry applied, changed: uri" in result.stderr


@pytest.mark.slow
@needs_videos
def test_replay_of_a_video_analyses_that_video_never_the_stored_cameras(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\n"
        f"cameras:\n  - {{id: sample, uri: '{VTEST}', analysis_fps: 2}}\n"
        "queries:\n  - text: a person running\n"
    )
    frames = tmp_path / "frames.jsonl"
    replay = [
        "eval",
        "replay",
        "--video",
        str(MEGAMIND),
        "--config",
        str(config),
        "--frames-out",
        str(frames),
    ]
    # a config that never ran: no registry yet, the YAML's queries are replayed
    fresh = _watchword(*replay, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "a person running" in fresh.stdout
    assert not (tmp_path / "state").exists(), "a replay leaves the site's state alone"

    # the state database holds the camera of an earlier start, looping, and one added at run time
    store = CameraStore(tmp_path / "state" / "watchword.db")
    store.apply_config([CameraConfig(id="sample", uri=str(VTEST), analysis_fps=10, loop=True)])
    store.add({"id": "door", "uri": "test://?fps=5"})
    store.close()
    result = _watchword(*replay, cwd=tmp_path, timeout=120)  # a loop would never end
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in frames.read_text().splitlines()]
    assert {(r["camera"], r["width"], r["height"]) for r in records} == {("sample", 720, 528)}
    # Megamind.avi: 270 frames at 24 frames/s, analysed at the YAML camera's 2 frames/s
    assert 20 <= len(records) <= 25

    wrong = _watchword(*replay, "--camera", "nosuch", cwd=tmp_path)
    assert wrong.returncode == 2 and "no such camera" in wrong.stderr
