"""``watchword export``: exit 0 on success, 2 on bad usage, 1 on failure, with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main


def test_export_clip_from_the_command_line(
    tiny_clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    assert main(["export", "clip", "--model", str(tiny_clip_dir), "--out", str(out), "--max-batch", "8"]) == 0
    err = capsys.readouterr().err
    assert "parity vision fp32" in err and "parity text fp32" in err and (out / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "clip", "--model", "m", "--out", "o", "--precision", "int8"], "INT8 needs --calibration"),
        (
            ["export", "clip", "--model", "m", "--out", "o", "--calibration", "/nowhere/video.avi"],
            "does not exist",
        ),
        (["export", "clip", "--model", "m", "--out", "o", "--opset", "13"], "--opset must be 17 or newer"),
        (["export", "clip", "--model", "m", "--out", "o", "--providers", "gpu"], "--providers"),
        (["export", "yolo", "--weights", "/nowhere/x.pt", "--out", "o"], "does not exist"),
        (["export", "ssd", "--out", "o", "--int8"], "--int8 needs --calibration-video"),
        (
            ["export", "ssd", "--out", "o", "--int8", "--calibration-video", "/nowhere/site.mp4"],
            "--calibration-video /nowhere/site.mp4 does not exist",
        ),
        (
            ["export", "yolo", "--weights", "x.pt", "--out", "o", "--int8", "--calibration-frames", "2"],
            "--calibration-frames must be 4 or more",
        ),
    ],
)
def test_bad_usage_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_dynamic_int8_from_the_command_line_needs_no_calibration(
    tiny_clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    argv = ["export", "clip", "--model", str(tiny_clip_dir), "--out", str(out), "--max-batch", "8"]
    assert main([*argv, "--precision", "int8", "--int8-mode", "dynamic"]) == 0
    assert "parity vision int8" in capsys.readouterr().err


def test_half_and_int8_together_is_an_argparse_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", "yolo", "--weights", "x.pt", "--out", "o", "--half", "--int8"])
    assert info.value.code == 2


def test_a_missing_model_exits_1_and_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    argv = ["export", "clip", "--model", "someone/clip-model", "--out", str(tmp_path / "o")]
    assert main([*argv, "--models-dir", str(tmp_path / "models")]) == 1
    assert "watchword models pull clip someone/clip-model" in " ".join(capsys.readouterr().err.split())
