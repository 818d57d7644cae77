"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.alerts.helpers import MOSQUITTO, Mosquitto, MqttSubscriber, WebhookReceiver, free_port
from tests.fixtures.pose_models import pose_config, pose_model_dir, sentence_embedder  # noqa: F401
from tests.fixtures.rtsp_server import RtspServer, unavailable_reason
from tests.fixtures.ssd_model import ssd_model_dir  # noqa: F401
from tests.fixtures.tiny_models import (
    SAMPLE_VIDEO,
    build_tiny_clip,
    build_tiny_yolo,
    export_tiny_clip,
    shared_dir,
)
from tests.fixtures.tiny_qwen2vl import build_tiny_qwen2vl


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    """A running RTSP server on 127.0.0.1 serving the sample video (384x288 H.264) at ``.url``.

    ``stop()`` and ``start()`` take it down and bring it back on the same port. Skips the test
    when gst-rtsp-server, openh264enc or the sample video is missing.
    """
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with RtspServer(width=384, height=288) as server:
        yield server


@pytest.fixture(scope="session")
def sample_video() -> Path:
    """The pedestrian sample video (768x576, 10 frames/s, 795 frames) from Debian's opencv-doc."""
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"needs the sample video {SAMPLE_VIDEO} (Debian package opencv-doc)")
    return SAMPLE_VIDEO


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny CLIP with a locally trained tokenizer, saved as a transformers model directory."""
    pytest.importorskip("transformers", reason="building the tiny CLIP needs the export extra")
    return shared_dir(tmp_path_factory, "tiny-clip", build_tiny_clip)


@pytest.fixture(scope="session")
def clip_fp32(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Path:
    """The tiny CLIP exported at fp32 by ``export.clip`` (ONNX graphs, tokenizer, manifest)."""
    return shared_dir(tmp_path_factory, "clip-fp32", lambda d: export_tiny_clip(d, tiny_clip_dir, "fp32"))


@pytest.fixture(scope="session")
def clip_int8(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Path:
    """The tiny CLIP exported at INT8, calibrated on crops of the sample video."""
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"INT8 calibration uses the sample video {SAMPLE_VIDEO} (Debian package opencv-doc)")
    return shared_dir(tmp_path_factory, "clip-int8", lambda d: export_tiny_clip(d, tiny_clip_dir, "int8"))


@pytest.fixture(scope="session")
def tiny_qwen2vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen2-VL with a locally trained tokenizer, saved as a transformers model directory."""
    pytest.importorskip("transformers", reason="the tiny vision-language model needs transformers")
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl"))


@pytest.fixture(scope="session")
def tiny_yolo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLOv8n built from its ultralytics yaml with random weights (no download)."""

    def build(directory: Path) -> None:
        build_tiny_yolo(directory)

    return shared_dir(tmp_path_factory, "tiny-yolo", build) / "tiny-yolo.pt"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running mosquitto broker on a free port of 127.0.0.1 (``stop()``/``start()`` to restart it)."""
    if not MOSQUITTO.is_file():
        pytest.skip(f"the mosquitto broker is not installed ({MOSQUITTO}); apt-get install mosquitto")
    broker = Mosquitto(tmp_path / "mosquitto", free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mqtt_subscriber(mosquitto: Mosquitto) -> Iterator[MqttSubscriber]:
    """A QoS 1 subscriber to ``watchword/#`` with a persistent session."""
    subscriber = MqttSubscriber(mosquitto.port)
    yield subscriber
    subscriber.close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP receiver that records POSTs and checks their HMAC signature."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
