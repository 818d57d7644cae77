"""Config loading: valid files load, bad ones name the YAML path and line of the bad key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, parse_config
from agent.embedding.config import TensorRTEngineConfig
from agent.sources.config import CameraConfig

REPO = Path(__file__).resolve().parents[2]


def test_demo_config_loads() -> None:
    config = load_config(REPO / "configs" / "demo.yaml")
    assert config.detector.type == "ssd-mobilenet"
    assert [c.id for c in config.cameras] == ["sample"]


def test_site_example_loads_with_env_and_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "yolo").mkdir(parents=True)
    (tmp_path / "models" / "yolo" / "yolo11n.onnx").write_bytes(b"onnx")
    monkeypatch.setenv("WATCHWORD_STATE_DIR", str(tmp_path / "volume"))
    monkeypatch.setenv("WATCHWORD_API_TOKEN", "a-long-enough-test-token")
    monkeypatch.setenv("CAMERA_USER", "viewer")
    monkeypatch.setenv("CAMERA_PASSWORD", "s3cret")
    config = load_config(REPO / "configs" / "site.example.yaml")
    assert config.tracker.type == "botsort"
    assert config.cameras[0].uri.startswith("rtsp://viewer:s3cret@")
    assert [c.id for c in config.enabled_cameras] == ["dock-1", "dock-2", "gate"]
    # Every piece of state is on the volume.
    volume = tmp_path / "volume"
    assert config.state_dir == volume and config.database.parent == volume
    assert config.alerts.database.parent == volume and config.alerts.evidence_dir.parent == volume
    engine = getattr(config.detector, "engine", None)
    assert isinstance(engine, TensorRTEngineConfig) and engine.cache_dir.parent.parent == volume


def test_state_dir_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHWORD_STATE_DIR", "/data")
    config = parse_config("cameras:\n  - id: a\n    uri: 'test://'\n")
    assert config.state_dir == Path("/data") and config.database == Path("/data/watchword.db")
    assert config.alerts.evidence_dir == Path("/data/evidence")
    monkeypatch.delenv("WATCHWORD_STATE_DIR")
    assert parse_config("cameras:\n  - id: a\n    uri: 'test://'\n").database == Path("data/watchword.db")


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "site.yaml")
    return str(info.value)


def test_unknown_key_named_with_line() -> None:
    message = _error("cameras:\n  - id: a\n    uri: 'test://'\n    fsp: 5\n")
    assert "site.yaml:4: cameras[0].fsp: unknown key" in message


def test_unknown_key_suggests_the_key_it_resembles_where_it_stands() -> None:
    message = _error(
        "cameras:\n  - id: a\n    urii: test://\n"
        "detector: {type: yolo, modle: x.onnx}\n"  # inside a union, chosen by its type
        "alerts: {sinks: [{type: webhook, url: 'http://h/x', timout_s: 5}]}\n"
        "pose: {intervl_s: 1}\n"
        "matching: {zzz: 1}\n"
    )
    assert "site.yaml:3: cameras[0].urii: unknown key 'urii'; did you mean 'uri'?" in message
    assert "detector.modle: unknown key 'modle'; did you mean 'model'?" in message
    assert "alerts.sinks[0].timout_s: unknown key 'timout_s'; did you mean 'timeout_s'?" in message
    assert "pose.intervl_s: unknown key 'intervl_s'; did you mean 'interval_s'?" in message
    assert "matching.zzz: unknown key 'zzz'\n" in message + "\n"  # nothing close: no guess


def test_a_file_camera_whose_file_is_missing_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "day.mp4").write_bytes(b"x")
    ok = parse_config(f"cameras:\n  - {{id: a, uri: '{tmp_path}/day.mp4'}}\n  - {{id: b, uri: 'test://'}}\n")
    assert [c.id for c in ok.cameras] == ["a", "b"]
    message = _error(f"cameras:\n  - id: a\n    uri: file://{tmp_path}/gone.mp4\n")
    assert f"site.yaml:3: cameras[0].uri: file camera: video file not found: {tmp_path}/gone.mp4" in message
    message = _error(f"cameras:\n  - id: a\n    uri: {tmp_path}\n")
    assert f"cameras[0].uri: file camera: video file is not a file: {tmp_path}" in message
    # a device path is not a file camera: a USB camera may be plugged in later
    assert parse_config("cameras:\n  - {id: a, uri: /dev/video7}\n").cameras[0].uri == "/dev/video7"
    # a replay that never opens the cameras accepts them
    assert parse_config(f"cameras:\n  - {{id: a, uri: {tmp_path}/gone.mp4}}\n", check_files=False).cameras
    # so do a camera read back from the state database and one given through the API, whose media
    # folders are checked first (tests/agent/console/test_camera_routes.py)
    assert CameraConfig(id="a", uri=f"{tmp_path}/gone.mp4").uri.endswith("gone.mp4")


def test_wrong_type_named() -> None:
    message = _error("cameras:\n  - id: a\n    uri: 'test://'\n    analysis_fps: fast\n")
    assert "cameras[0].analysis_fps" in message
    assert "number" in message


def test_missing_model_file_named_inside_union(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    message = _error(
        f"cameras:\n  - id: a\n    uri: 'test://'\ndetector:\n  type: yolo\n  model: {missing}\n"
    )
    assert f"site.yaml:6: detector.model: file not found: {missing}" in message


def test_unknown_detector_type() -> None:
    message = _error("cameras:\n  - id: a\n    uri: 'test://'\ndetector:\n  type: magic\n")
    assert "detector" in message
    assert "ssd-mobilenet" in message and "yolo" in message


def test_missing_required_key_and_duplicate_ids() -> None:
    assert "cameras[0].uri: required key is missing" in _error("cameras:\n  - id: a\n")
    message = _error("cameras:\n  - {id: a, uri: 'test://'}\n  - {id: a, uri: 'test://?fps=5'}\n")
    assert "camera id 'a' is used twice" in message


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_HOST", "10.1.2.3")
    monkeypatch.delenv("CAM_PORT", raising=False)
    config = parse_config("cameras:\n  - id: a\n    uri: rtsp://${CAM_HOST}:${CAM_PORT:-554}/s\n")
    assert config.cameras[0].uri == "rtsp://10.1.2.3:554/s"
    monkeypatch.delenv("CAM_HOST")
    message = _error("cameras:\n  - id: a\n    uri: rtsp://${CAM_HOST}/s\n")
    assert "site.yaml:3: cameras[0].uri: environment variable CAM_HOST is not set" in message


def test_not_yaml_and_not_mapping(tmp_path: Path) -> None:
    assert "not valid YAML" in _error("cameras: [unclosed\n")
    assert "top level must be a mapping" in _error("- a\n- b\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_reading_the_config_loads_no_runtime_of_the_sections_it_nests() -> None:
    """Each section's model lives beside its code (agent/sources, detection, tracking, ...): importing
    ``agent.config`` loads those config modules, not the trackers, sources, engines or OpenCV."""
    code = (
        "import sys, json, agent.config; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'cv2', 'engines', 'gi'} "
        "or m in {'agent.tracking.camera_tracker', 'agent.detection.base', 'agent.sources.base'})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
