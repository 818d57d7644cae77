"""One GStreamer pipeline for one camera: source -> rate limit -> scale -> BGR -> appsink.

Every conversion happens inside GStreamer: frames are dropped down to the camera's
``analysis_fps`` (never duplicated) before anything else, ``videoscale`` shrinks frames to fit
``max_width`` x ``max_height`` with square pixels and the display aspect ratio kept (never
enlarging), and ``videoconvert`` produces packed BGR. The target size is set when the decoded stream's caps
arrive (and again if they change), because only then is the native size known.

Python only copies each BGR buffer into a numpy array, honouring row padding (stride).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from agent.gst import protect_unwinder
from agent.sources.base import SourceError
from agent.sources.config import CameraConfig
from agent.sources.decoders import DecoderPlan
from agent.sources.rate import RateLimiter
from agent.sources.uri import SourceSpec, TestPattern

protect_unwinder()  # before GStreamer's libraries are loaded: see agent.gst
try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstVideo", "1.0")
    gi.require_version("GstApp", "1.0")
    from gi.repository import GLib, GObject, Gst, GstApp, GstVideo  # noqa: F401  (GstApp: try_pull_sample)
except (ImportError, ValueError) as exc:  # pragma: no cover - depends on the machine
    raise SourceError(
        "GStreamer through PyGObject is not available; install PyGObject and the Debian packages "
        f"gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base ({exc})"
    ) from exc

logger = logging.getLogger(__name__)

_init_lock = threading.Lock()
_BUS_TYPES = Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.WARNING


def ensure_gst() -> None:
    """Initialise GStreamer once per process."""
    with _init_lock:
        if not Gst.is_initialized():
            Gst.init(None)


def fit_size(width: int, height: int, par: Fraction, max_width: int, max_height: int) -> tuple[int, int]:
    """Output size in square pixels that fits ``max_width`` x ``max_height`` without enlarging.

    ``par`` is the stream's pixel aspect ratio; non-square pixels are squeezed (never stretched)
    to square ones before fitting, so the display aspect ratio is kept.
    """
    base_w, base_h = float(width), float(height)
    if par > 1:
        base_h = height / float(par)
    elif par < 1:
        base_w = width * float(par)
    scale = min(1.0, max_width / base_w, max_height / base_h)
    return max(2, min(max_width, round(base_w * scale))), max(2, min(max_height, round(base_h * scale)))


@dataclass(frozen=True)
class BusEvent:
    """A pipeline message the worker acts on: ``kind`` is ``eos`` or ``error``."""

    kind: str
    message: str = ""


def _make(factory: str, name: str | None = None, **props: Any) -> Any:
    element = Gst.ElementFactory.make(factory, name)
    if element is None:
        raise SourceError(
            f"GStreamer element {factory!r} is not available; install the gstreamer1.0-plugins-base, "
            "-good, -bad and gstreamer1.0-libav packages"
        )
    for key, value in props.items():
        element.set_property(key.replace("_", "-"), value)
    return element


def _set_enum(element: Any, prop: str, nick: str) -> None:
    enum_class = element.find_property(prop).enum_class
    if GObject.enum_get_value_by_nick(enum_class, nick) is None:
        values = (
            GObject.enum_get_value(enum_class, i) for i in range(enum_class.minimum, enum_class.maximum + 1)
        )
        nicks = ", ".join(value.value_nick for value in values if value is not None)
        raise SourceError(f"unknown {prop} {nick!r}; expected one of {nicks}")
    Gst.util_set_object_arg(element, prop, nick)


def _limit(limiter: RateLimiter, pipeline: Any, info: Any) -> Any:
    """Pad probe: drop a buffer that comes sooner than the analysis rate allows.

    A buffer without a timestamp is judged by the pipeline's running time, the clock that live
    sources stamp their buffers with.
    """
    buffer = info.get_buffer()
    if buffer is None:
        return Gst.PadProbeReturn.OK
    pts = buffer.pts if buffer.pts != Gst.CLOCK_TIME_NONE else pipeline.get_current_running_time()
    if pts == Gst.CLOCK_TIME_NONE:
        return Gst.PadProbeReturn.OK
    return Gst.PadProbeReturn.OK if limiter.keep(pts / Gst.SECOND) else Gst.PadProbeReturn.DROP


def _error_text(message: Any) -> str:
    error, debug = message.parse_error() if message.type == Gst.MessageType.ERROR else message.parse_warning()
    detail = (debug or "").strip().splitlines()[-1:] if debug else []
    source = message.src.get_name() if message.src is not None else "pipeline"
    text = f"{error.message} [{source}]"
    if detail and detail[0] not in error.message:
        text += f": {detail[0][:300]}"
    return text


class CameraPipeline:
    """A built (not yet playing) pipeline for one camera, driven from the source's worker thread.

    The decoded stream is linked when its caps are known (uridecodebin's ``pad-added``): a stream
    with a fixed frame rate above ``analysis_fps`` goes through ``videorate`` (drop-only, fixed
    output rate); a stream with a variable rate goes through a timestamp :class:`RateLimiter` in a
    pad probe instead, because GStreamer 1.22's ``videorate`` aborts the process on variable-rate
    buffers without a duration, which MJPEG and some RTSP cameras deliver.
    """

    def __init__(self, camera: CameraConfig, spec: SourceSpec, decoding: DecoderPlan | None = None) -> None:
        ensure_gst()
        self.camera = camera
        self.spec = spec
        self.decoding = decoding or DecoderPlan("software", "software")
        self.decoder: str | None = None  # the video decoder factory uridecodebin picked
        self.native_fps: float | None = None
        self.video_linked = False
        self._configured: tuple[int, int, int, int] | None = None
        self.pipeline = Gst.Pipeline.new(f"camera-{camera.id}")
        self._build()
        self.bus = self.pipeline.get_bus()

    # --- construction -----------------------------------------------------------------------

    def _build(self) -> None:
        self._scale = _make("videoscale")
        self._size_filter = _make("capsfilter", "size-caps")
        self.appsink = _make(
            "appsink",
            "frames",
            emit_signals=False,
            sync=False,
            max_buffers=2,
            drop=False,
            enable_last_sample=False,
            wait_on_eos=True,
        )
        tail = [
            self._scale,
            self._size_filter,
            _make("videoconvert"),
            _make("capsfilter", caps=Gst.Caps.from_string("video/x-raw,format=BGR")),
            self.appsink,
        ]
        for element in tail:
            self.pipeline.add(element)
        for upstream, downstream in itertools.pairwise(tail):
            if not upstream.link(downstream):
                raise SourceError(f"cannot link {upstream.get_name()} to {downstream.get_name()}")

        if self.spec.kind == "test":
            assert self.spec.test is not None
            src, caps = self._test_source(self.spec.test)
            self.pipeline.add(src)
            if not self._link_video(src.get_static_pad("src"), caps):
                raise SourceError("cannot link the test pattern source")
        else:
            decode = _make("uridecodebin", "decode", uri=self.spec.uri)
            decode.connect("source-setup", self._on_source_setup)
            decode.connect("autoplug-select", self._on_autoplug_select)
            decode.connect("pad-added", self._on_pad_added)
            self.pipeline.connect("deep-element-added", self._on_element_added)
            self.pipeline.add(decode)

    def _test_source(self, test: TestPattern) -> tuple[Any, Any]:
        bin_ = Gst.Bin.new("test-source")
        src = _make("videotestsrc", is_live=True)
        _set_enum(src, "pattern", test.pattern)
        caps = Gst.Caps.from_string(
            f"video/x-raw,width={test.width},height={test.height},"
            f"framerate={test.fps.numerator}/{test.fps.denominator},pixel-aspect-ratio=1/1"
        )
        capsfilter = _make("capsfilter", caps=caps)
        bin_.add(src)
        bin_.add(capsfilter)
        src.link(capsfilter)
        bin_.add_pad(Gst.GhostPad.new("src", capsfilter.get_static_pad("src")))
        return bin_, caps

    def _on_source_setup(self, _decode: Any, source: Any) -> None:
        """Transport settings of the network source uridecodebin picked."""
        camera = self.camera
        factory = source.get_factory()
        name = factory.get_name() if factory is not None else ""
        timeout_us = int(camera.connect_timeout_s * 1_000_000)
        if name == "rtspsrc":
            Gst.util_set_object_arg(source, "protocols", camera.rtsp_transport)
            source.set_property("latency", camera.latency_ms)
            source.set_property("tcp-timeout", timeout_us)
            source.set_property("timeout", timeout_us)
        elif name == "souphttpsrc":
            source.set_property("timeout", max(1, math.ceil(camera.connect_timeout_s)))
            source.set_property("retries", 1)
            # MJPEG streams carry no timestamps: stamp buffers on arrival, without prerolling.
            source.set_property("is-live", True)
            source.set_property("do-timestamp", True)
        logger.debug("camera %s: source element %s", camera.id, name or "?")

    def _on_autoplug_select(self, _bin: Any, _pad: Any, caps: Any, factory: Any) -> int:
        """Keep uridecodebin to the camera's decoder family (see :mod:`agent.sources.decoders`)."""
        return self.decoding.select(caps, factory)

    def _on_element_added(self, _bin: Any, _parent: Any, element: Any) -> None:
        factory = element.get_factory()
        klass = (factory.get_metadata("klass") or "") if factory is not None else ""
        if factory is not None and "Decoder" in klass and "Video" in klass:
            self.decoder = factory.get_name()
            logger.info(
                "camera %s: decoding with %s (%s)", self.camera.id, self.decoder, self.decoding.family
            )
        if factory is not None and factory.get_name() == "multipartdemux":
            # MJPEG over HTTP: without this, decodebin waits forever for more streams.
            element.set_property("single-stream", True)

    def _on_pad_added(self, _decode: Any, pad: Any) -> None:
        """Link the first decoded video stream; send any other stream into a fakesink."""
        caps = pad.get_current_caps() or pad.query_caps(None)
        media = caps.get_structure(0).get_name() if caps is not None and caps.get_size() else ""
        if media.startswith("video/x-raw") and not self.video_linked:
            if self._link_video(pad, caps):
                return
            text = f"cannot link the decoded video {caps.to_string()} ({self.decoding.family} decoding)"
            logger.error("camera %s: %s", self.camera.id, text)
            # An error on the bus ends this run (and lets `decode: auto` fall back to software);
            # without it the tail would wait for frames that never come.
            self.pipeline.post_message(Gst.Message.new_error(self.pipeline, GLib.Error(text), text))
        sink = _make("fakesink", sync=False)
        sink.set_property("async", False)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def _link_video(self, pad: Any, caps: Any) -> bool:
        """Link the decoded video ``pad`` into the tail, through a rate limit when one is needed."""
        self._configure(caps)
        head = self._scale
        analysis = self.camera.analysis_fps
        if analysis is not None and self.native_fps is not None and self.native_fps > analysis:
            target = Fraction(analysis).limit_denominator(1001)
            rate = _make("videorate", drop_only=True)
            rate_caps = _make(
                "capsfilter",
                caps=Gst.Caps.from_string(f"video/x-raw,framerate={target.numerator}/{target.denominator}"),
            )
            for element in (rate, rate_caps):
                self.pipeline.add(element)
            if not (rate.link(rate_caps) and rate_caps.link(self._scale)):
                return False
            rate_caps.sync_state_with_parent()
            rate.sync_state_with_parent()
            head = rate
        elif analysis is not None and self.native_fps is None:
            limiter = RateLimiter(analysis)
            self._scale.get_static_pad("sink").add_probe(
                Gst.PadProbeType.BUFFER, lambda _pad, info: _limit(limiter, self.pipeline, info)
            )
        pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, self._on_caps_event)
        if self.decoding.convert and self.spec.kind != "test":
            # e.g. Jetson: NVMM buffers -> system memory before the rate limit and the scaler.
            convert = _make(self.decoding.convert)
            system = _make("capsfilter", caps=Gst.Caps.from_string("video/x-raw"))
            for element in (convert, system):
                self.pipeline.add(element)
            if not (convert.link(system) and system.link(head)):
                return False
            system.sync_state_with_parent()
            convert.sync_state_with_parent()
            head = convert
        result = pad.link(head.get_static_pad("sink"))
        self.video_linked = result == Gst.PadLinkReturn.OK
        return self.video_linked

    def _on_caps_event(self, _pad: Any, info: Any) -> Any:
        """On new caps of the decoded stream (a resolution change), fit the output size again."""
        event = info.get_event()
        if event is not None and event.type == Gst.EventType.CAPS:
            self._configure(event.parse_caps())
        return Gst.PadProbeReturn.OK

    def _configure(self, caps: Any) -> None:
        """Read the native size and rate from ``caps``; set the output size to fit the camera's maximum."""
        structure = caps.get_structure(0)
        ok_w, width = structure.get_int("width")
        ok_h, height = structure.get_int("height")
        ok_fps, fps_n, fps_d = structure.get_fraction("framerate")
        self.native_fps = fps_n / fps_d if ok_fps and fps_n > 0 and fps_d > 0 else None
        if not (ok_w and ok_h):
            return
        ok_par, par_n, par_d = structure.get_fraction("pixel-aspect-ratio")
        par = Fraction(par_n, par_d) if ok_par and par_n > 0 and par_d > 0 else Fraction(1)
        out_w, out_h = fit_size(width, height, par, self.camera.max_width, self.camera.max_height)
        if (width, height, out_w, out_h) == self._configured:
            return
        self._configured = (width, height, out_w, out_h)
        self._size_filter.set_property(
            "caps", Gst.Caps.from_string(f"video/x-raw,width={out_w},height={out_h},pixel-aspect-ratio=1/1")
        )
        logger.info(
            "camera %s: decoding %dx%d at %s frames/s, delivering %dx%d BGR",
            self.camera.id,
            width,
            height,
            "variable" if self.native_fps is None else f"{self.native_fps:.3g}",
            out_w,
            out_h,
        )

    # --- running ----------------------------------------------------------------------------

    def play(self) -> str | None:
        """Set the pipeline playing; the error text when it fails at once, else None."""
        result = self.pipeline.set_state(Gst.State.PLAYING)
        if result == Gst.StateChangeReturn.FAILURE:
            for event in self.poll_bus():
                if event.kind == "error":
                    return event.message
            return "the pipeline refused to start"
        return None

    def pull(self, timeout_s: float) -> tuple[np.ndarray, float | None] | None:
        """The next BGR image and its PTS in seconds, or None within ``timeout_s`` seconds."""
        sample = self.appsink.try_pull_sample(int(timeout_s * Gst.SECOND))
        if sample is None:
            return None
        buffer = sample.get_buffer()
        pts = None if buffer.pts == Gst.CLOCK_TIME_NONE else buffer.pts / Gst.SECOND
        return sample_to_bgr(sample), pts

    def poll_bus(self) -> Iterator[BusEvent]:
        """Pending EOS and error messages, without waiting; warnings are logged."""
        while True:
            message = self.bus.pop_filtered(_BUS_TYPES)
            if message is None:
                return
            if message.type == Gst.MessageType.EOS:
                yield BusEvent("eos")
            elif message.type == Gst.MessageType.ERROR:
                yield BusEvent("error", _error_text(message))
            else:
                logger.warning("camera %s: %s", self.camera.id, _error_text(message))

    def rewind(self) -> bool:
        """Seek to the start (for looping files); False when the stream cannot seek."""
        flags = Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT
        return bool(self.pipeline.seek_simple(Gst.Format.TIME, flags, 0))

    def close(self) -> None:
        """Stop the pipeline and release its resources (may block if GStreamer hangs)."""
        self.pipeline.set_state(Gst.State.NULL)


def sample_to_bgr(sample: Any) -> np.ndarray:
    """Copy a BGR sample into an owned, writable (height, width, 3) uint8 array, skipping row padding."""
    buffer = sample.get_buffer()
    info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
    if info is None or info.finfo.format != GstVideo.VideoFormat.BGR:
        raise SourceError(f"expected BGR frames, got caps {sample.get_caps().to_string()}")
    width, height = info.width, info.height
    meta = GstVideo.buffer_get_video_meta(buffer)
    layout = meta if meta is not None else info
    stride, offset = layout.stride[0], layout.offset[0]
    row_bytes = width * 3
    needed = stride * (height - 1) + row_bytes
    data = buffer.extract_dup(offset, needed)
    if len(data) < needed:
        raise SourceError(f"short video buffer: {len(data)} bytes, expected {needed}")
    flat = np.frombuffer(data, dtype=np.uint8, count=needed)
    if stride == row_bytes:
        return flat.reshape(height, width, 3).copy()
    rows = np.lib.stride_tricks.as_strided(
        flat, shape=(height, width, 3), strides=(stride, 3, 1), writeable=False
    )
    return np.ascontiguousarray(rows)
