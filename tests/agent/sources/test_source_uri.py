"""Camera URIs map to the right kind of source, and bad ones fail with a clear message."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.sources import SourceError, open_source
from agent.sources.uri import parse_source_uri, redact_uri
from tests.fixtures.sources import camera_config


def test_plain_path_is_an_absolute_file_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = parse_source_uri("videos/my clip.mp4")
    assert spec.kind == "file"
    assert not spec.is_live
    assert spec.path == tmp_path / "videos" / "my clip.mp4"
    assert spec.uri == (tmp_path / "videos" / "my clip.mp4").as_uri()


def test_file_uri_is_unquoted() -> None:
    spec = parse_source_uri("file:///data/my%20clip.mp4")
    assert spec.kind == "file"
    assert spec.path == Path("/data/my clip.mp4")


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("rtsp://cam.local:554/stream1", "rtsp"),
        ("rtsps://cam.local/stream1", "rtsp"),
        ("http://cam.local/video.mjpg", "http"),
        ("https://example.org/live/index.m3u8", "http"),
        ("v4l2:///dev/video0", "v4l2"),
        ("/dev/video2", "v4l2"),
        ("test://", "test"),
    ],
)
def test_live_schemes(uri: str, kind: str) -> None:
    spec = parse_source_uri(uri)
    assert spec.kind == kind
    assert spec.is_live


def test_usb_camera_path_becomes_a_v4l2_uri() -> None:
    assert parse_source_uri("/dev/video2").uri == "v4l2:///dev/video2"


def test_test_pattern_parameters() -> None:
    spec = parse_source_uri("test://?pattern=ball&width=320&height=240&fps=7.5")
    assert spec.test is not None
    assert (spec.test.pattern, spec.test.width, spec.test.height) == ("ball", 320, 240)
    assert spec.test.fps == Fraction(15, 2)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("test://?colour=red", "unknown test:// parameter 'colour'"),
        ("test://?width=-3", "width must be positive"),
        ("test://?fps=fast", "fps='fast' is not a number"),
        ("rtsp:///stream", "no host name"),
        ("v4l2://", "expected a device path"),
    ],
)
def test_bad_parameters_are_named(uri: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_source_uri(uri)


def test_unsupported_scheme_names_camera_and_scheme() -> None:
    # Refused when the config loads (exit 2 with the key's line), before any source is built.
    with pytest.raises(ValidationError) as excinfo:
        camera_config("ftp://files.local/video.mp4", camera_id="gate")
    message = str(excinfo.value)
    assert "uri" in message
    assert "'ftp'" in message
    assert "rtsp://" in message  # says what is supported
    # The runtime parser refuses it too, for configs built without validation.
    with pytest.raises(SourceError, match="'ftp'"):
        parse_source_uri("ftp://files.local/video.mp4")


def test_unknown_test_pattern_fails_at_open() -> None:
    with pytest.raises(SourceError, match=r"unknown pattern 'plaid'.*ball"):
        open_source(camera_config("test://?pattern=plaid"))


def test_passwords_are_redacted() -> None:
    assert redact_uri("rtsp://admin:s3cret@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    assert redact_uri("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


def test_error_messages_never_show_the_password() -> None:
    with pytest.raises(ValidationError) as excinfo:
        camera_config("foo://admin:s3cret@10.0.0.5/live")
    assert "s3cret" not in str(excinfo.value).split("input_value")[0]
    with pytest.raises(SourceError) as runtime:
        parse_source_uri("foo://admin:s3cret@10.0.0.5/live")
    assert "s3cret" not in str(runtime.value)
