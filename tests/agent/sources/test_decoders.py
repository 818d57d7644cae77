"""Hardware decoding: the plan each ``decode`` choice gives, the registry probe, and the fallback.

No GPU or VA-API device here, so the hardware families are exercised two ways: their plans and
pipeline descriptions from a stated registry, and, for the fallback, a family made of real elements
whose path cannot start (standing in for an NVDEC/VA-API decoder whose device is missing; the
family table is patched for that, the only stand-in). bench/gpu_check.sh runs the real NVDEC path
when a GPU is lent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.sources import Source, SourceState
from agent.sources import decoders as decoders_module
from agent.sources.config import CameraConfig
from agent.sources.decoders import DecoderPlan, DecoderUnavailableError, plan_decoding
from tests.fixtures.sources import camera_config, read_frames, wait_for

StartSource = Callable[[CameraConfig], Source]
SOFTWARE_DIVX = "avdec_msmpeg4"  # libav's decoder of the sample video (DivX 3)


def _registry(*names: str) -> Callable[[str], bool]:
    return set(names).__contains__


def test_each_choice_gives_its_decoders_and_pipeline() -> None:
    software = plan_decoding("software", "cam", _registry("nvh264dec", "vah264dec"))
    assert software.family == "software" and not software.hardware
    assert software.describe().startswith("uridecodebin[decoders=software only] ! videorate|rate-probe")

    nvdec = plan_decoding("nvdec", "cam", _registry("nvh264dec", "nvh265dec", "vah264dec"))
    assert (nvdec.family, nvdec.decoders, nvdec.convert) == ("nvdec", ("nvh264dec", "nvh265dec"), None)
    assert nvdec.describe().startswith("uridecodebin[decoders=nvh264dec,nvh265dec] ! videorate")

    jetson = plan_decoding("jetson", "cam", _registry("nvv4l2decoder", "nvvidconv"))
    assert jetson.describe().startswith("uridecodebin[decoders=nvv4l2decoder] ! nvvidconv ! video/x-raw ! ")
    assert jetson.describe().endswith("videoscale ! videoconvert ! video/x-raw,format=BGR ! appsink")

    vaapi = plan_decoding("vaapi", "cam", _registry("vah264dec", "vah265dec"))
    assert vaapi.decoders == ("vah264dec", "vah265dec") and vaapi.convert is None


def test_auto_takes_the_first_family_present_and_falls_to_software(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.decoders")
    assert plan_decoding("auto", "a", _registry("nvh264dec", "vah264dec")).family == "nvdec"
    assert plan_decoding("auto", "b", _registry("nvv4l2decoder", "nvvidconv", "nvh264dec")).family == "jetson"
    # nvv4l2decoder without nvvidconv cannot feed the tail: not Jetson.
    assert plan_decoding("auto", "c", _registry("nvv4l2decoder", "vah264dec")).family == "vaapi"
    assert plan_decoding("auto", "d", _registry()).family == "software"
    assert "camera a: decode auto -> nvdec (nvh264dec)" in caplog.text
    assert "camera d: decode auto -> software" in caplog.text


def test_an_explicit_family_missing_here_is_refused_with_the_reason() -> None:
    with pytest.raises(DecoderUnavailableError, match=r"decode: jetson needs nvv4l2decoder.*nvvidconv"):
        plan_decoding("jetson", "cam", _registry("nvv4l2decoder"))
    with pytest.raises(DecoderUnavailableError, match=r"decode: nvdec needs nvh264dec.*or set decode: auto"):
        plan_decoding("nvdec", "cam", _registry())


def test_auto_probes_this_machines_registry(caplog: pytest.LogCaptureFixture) -> None:
    from agent.sources.pipeline import ensure_gst

    ensure_gst()
    present = [n for names in decoders_module.HARDWARE_DECODERS.values() for n in names if _has(n)]
    caplog.set_level(logging.INFO, logger="agent.sources.decoders")
    plan = plan_decoding("auto", "probe")
    if present:
        assert plan.hardware and set(plan.decoders) <= set(present)
    else:
        assert plan.family == "software"
    assert f"camera probe: decode auto -> {plan.family}" in caplog.text


def _has(name: str) -> bool:
    from gi.repository import Gst

    return Gst.ElementFactory.find(name) is not None


@pytest.fixture
def failing_vaapi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make "vaapi" a family whose path cannot start here: a decoder present in the registry
    (libav's H.264 one) and, as its memory converter, ``jpegdec``, which cannot take decoded video,
    so the pipeline fails before its first frame, as a VA-API or NVDEC path without its device does."""
    from agent.sources.pipeline import ensure_gst

    ensure_gst()
    if not (_has(SOFTWARE_DIVX) and _has("avdec_h264") and _has("jpegdec")):
        pytest.skip("gstreamer1.0-libav or gstreamer1.0-plugins-good is missing")
    monkeypatch.setitem(decoders_module.HARDWARE_DECODERS, "vaapi", ("avdec_h264",))
    monkeypatch.setitem(decoders_module.CONVERTERS, "vaapi", "jpegdec")
    monkeypatch.setattr(decoders_module, "AUTO_ORDER", ("vaapi",))


@pytest.mark.slow
def test_auto_falls_back_to_software_when_the_hardware_path_fails_to_start(
    sample_video: Path, start_source: StartSource, failing_vaapi: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source = start_source(camera_config(sample_video, decode="auto", max_width=384, max_height=288))
    frames = read_frames(source, count=5)
    assert len(frames) == 5
    assert "decode auto -> vaapi (avdec_h264)" in caplog.text
    assert "hardware decoding (vaapi) failed to start" in caplog.text
    assert "falling back to software decoding" in caplog.text
    assert f"decoding with {SOFTWARE_DIVX} (software)" in caplog.text


@pytest.mark.slow
def test_explicit_hardware_that_fails_does_not_fall_back(
    sample_video: Path, start_source: StartSource, failing_vaapi: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    explicit = start_source(camera_config(sample_video, camera_id="hw", decode="vaapi"))
    assert wait_for(lambda: explicit.stats().state == SourceState.FAILED, timeout_s=30)
    assert "falling back" not in caplog.text


def test_plan_select_keeps_each_family_to_its_decoders(monkeypatch: pytest.MonkeyPatch) -> None:
    from gi.repository import Gst

    from agent.sources.pipeline import ensure_gst

    ensure_gst()
    divx, mpeg4 = Gst.ElementFactory.find(SOFTWARE_DIVX), Gst.ElementFactory.find("avdec_mpeg4")
    if divx is None or mpeg4 is None:
        pytest.skip("gstreamer1.0-libav is not installed")
    monkeypatch.setitem(decoders_module.HARDWARE_DECODERS, "vaapi", (SOFTWARE_DIVX,))
    caps = Gst.Caps.from_string("video/x-divx,divxversion=3")
    software = DecoderPlan("software", "software")
    hardware = DecoderPlan("vaapi", "vaapi", (SOFTWARE_DIVX,))
    assert software.select(caps, divx) == decoders_module.AUTOPLUG_SKIP  # a "hardware" decoder now
    assert software.select(caps, mpeg4) == decoders_module.AUTOPLUG_TRY
    assert hardware.select(caps, divx) == decoders_module.AUTOPLUG_TRY
    assert hardware.select(caps, mpeg4) == decoders_module.AUTOPLUG_SKIP  # ours can take the stream
    # A stream the family cannot decode keeps its software decoders.
    assert hardware.select(Gst.Caps.from_string("video/mpeg,mpegversion=4"), mpeg4) == 0
