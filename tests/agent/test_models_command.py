"""``watchword models pull|list``: downloads only on request, clear failures offline, a readable listing."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from agent.cli import main


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every connection fail the way an unplugged machine's do."""

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", unreachable)
    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_pulling_a_clip_model_offline_fails_clearly(
    tmp_path: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["models", "pull", "clip", "openai/clip-vit-base-patch32", "--dir", str(tmp_path), "--timeout", "2"]
    )
    assert code == 1
    err = _err(capsys)
    assert "cannot reach huggingface.co" in err and "offline" in err
    assert not (tmp_path / "clip" / "openai__clip-vit-base-patch32" / "source.json").exists()


def test_pulling_yolo_weights_offline_fails_clearly(
    tmp_path: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "pull", "yolo", "yolov8n.pt", "--dir", str(tmp_path), "--timeout", "2"]) == 1
    assert "cannot reach github.com" in _err(capsys)
    assert not list((tmp_path / "yolo").glob("*"))  # no partial file left behind


def test_unknown_yolo_weights_are_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", "yolo", "yolov99z.pt", "--dir", str(tmp_path)]) == 2
    assert "not an ultralytics release weight file" in _err(capsys)


def test_bad_timeout_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", "clip", "a/b", "--dir", str(tmp_path), "--timeout", "0"]) == 2


def test_list_shows_pulled_models_and_exports_and_flags_a_tampered_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engines import Manifest, write_manifest

    monkeypatch.setenv("COLUMNS", "300")  # one table row per line

    pulled = tmp_path / "clip" / "openai__clip-vit-base-patch32"
    pulled.mkdir(parents=True)
    (pulled / "config.json").write_text("{}")
    (pulled / "source.json").write_text(
        json.dumps(
            {
                "repo_id": "openai/clip-vit-base-patch32",
                "revision": "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268",
            }
        )
    )
    export = tmp_path / "clip" / "site-clip-int8"
    export.mkdir()
    (export / "vision.onnx").write_bytes(b"graph")
    write_manifest(
        export,
        Manifest(
            kind="clip",
            source={"model": "openai/clip-vit-base-patch32"},
            precision="int8",
            opset=17,
            graphs={"vision": {"file": "vision.onnx"}},
            parity=[{"graph": "vision", "min_cosine": 0.9932}],
            versions={},
        ),
    )
    (tmp_path / "yolo").mkdir()
    (tmp_path / "yolo" / "yolov8n.pt").write_bytes(b"w" * 10)

    assert main(["models", "list", "--dir", str(tmp_path), "--verify"]) == 0
    out = _err(capsys)
    assert "openai/clip-vit-base-patch32@3d74acf9a28c" in out
    assert "clip int8 opset 17" in out and "0.99320" in out
    assert "yolov8n.pt" in out and "copied in" in out

    (export / "vision.onnx").write_bytes(b"GRAPH")
    assert main(["models", "list", "--dir", str(tmp_path), "--verify"]) == 1
    assert "invalid export" in _err(capsys)


def test_list_without_a_models_directory_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--dir", str(tmp_path / "none")]) == 1
    assert "no models directory" in _err(capsys)
