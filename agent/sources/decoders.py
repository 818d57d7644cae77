"""Which video decoder a camera's pipeline uses: ``decode: auto | software | nvdec | jetson | vaapi``.

``uridecodebin`` picks decoders by rank; a :class:`DecoderPlan` steers that choice per camera
through its ``autoplug-select`` signal: hardware families allow only their own decoders (any other
video decoder is skipped while one of theirs can take the stream), ``software`` skips every hardware
decoder. ``auto`` probes the GStreamer registry for the families in :data:`AUTO_ORDER` and takes the
first one present; if that pipeline then fails before its first frame the source falls back to
software decoding (see :class:`agent.sources.gst_source.GstSource`). An explicit hardware family
that the registry lacks stops the camera with the reason.

Jetson's ``nvv4l2decoder`` outputs NVMM buffers, which ``nvvidconv`` copies to system memory for
the scale/convert tail; NVDEC and VA-API decoders negotiate system memory with that tail directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger(__name__)

DecodeChoice = Literal["auto", "software", "nvdec", "jetson", "vaapi"]

# Decoder element factories of each hardware family, most common codecs first.
HARDWARE_DECODERS: Mapping[str, tuple[str, ...]] = {
    "jetson": ("nvv4l2decoder", "nvjpegdec"),
    "nvdec": (
        "nvh264dec",
        "nvh265dec",
        "nvav1dec",
        "nvvp9dec",
        "nvvp8dec",
        "nvmpeg4videodec",
        "nvmpeg2videodec",
    ),
    "vaapi": (
        "vah264dec",
        "vah265dec",
        "vaav1dec",
        "vavp9dec",
        "vaapih264dec",
        "vaapih265dec",
        "vaapivp9dec",
    ),
}
AUTO_ORDER = ("jetson", "nvdec", "vaapi")
# Element that brings each family's output into system memory, where the tail can take it.
CONVERTERS: Mapping[str, str] = {"jetson": "nvvidconv"}
APT_HINT = {
    "nvdec": "gstreamer1.0-plugins-bad (nvcodec) and an NVIDIA driver with video capability",
    "jetson": "JetPack's GStreamer plugins (nvv4l2decoder, nvvidconv)",
    "vaapi": "gstreamer1.0-plugins-bad (va) or gstreamer1.0-vaapi and a VA-API driver",
}

# GstAutoplugSelectResult (not introspectable): try the factory, or skip it.
AUTOPLUG_TRY = 0
AUTOPLUG_SKIP = 2


class DecoderUnavailableError(RuntimeError):
    """A hardware decoder family the config asks for is not in this machine's GStreamer registry."""


@dataclass(frozen=True)
class DecoderPlan:
    """The decoding a camera's pipeline will use.

    Attributes:
        requested: the camera's ``decode`` setting.
        family: ``software`` or the hardware family in use.
        decoders: the family's decoder factories present here (empty for software).
        convert: the element that copies decoded frames to system memory, if the family needs one.
    """

    requested: str
    family: str
    decoders: tuple[str, ...] = ()
    convert: str | None = None

    @property
    def hardware(self) -> bool:
        return self.family != "software"

    def describe(self) -> str:
        """The pipeline, as ``gst-launch`` would spell it (decoder constraint in brackets)."""
        chosen = ",".join(self.decoders) if self.decoders else "software only"
        steps = [f"uridecodebin[decoders={chosen}]"]
        if self.convert:
            steps += [self.convert, "video/x-raw"]
        steps += ["videorate|rate-probe", "videoscale", "videoconvert", "video/x-raw,format=BGR", "appsink"]
        return " ! ".join(steps)

    def select(self, caps: Any, factory: Any) -> int:
        """``autoplug-select`` answer for ``factory`` on a stream with ``caps``."""
        if not _is_video_decoder(factory):
            return AUTOPLUG_TRY
        name = factory.get_name()
        if not self.hardware:
            return AUTOPLUG_SKIP if is_hardware_decoder(factory) else AUTOPLUG_TRY
        if name in self.decoders:
            return AUTOPLUG_TRY
        ours_can = any(_can_sink(decoder, caps) for decoder in self.decoders)
        return AUTOPLUG_SKIP if ours_can else AUTOPLUG_TRY


def _is_video_decoder(factory: Any) -> bool:
    klass = factory.get_metadata("klass") or ""
    return "Decoder" in klass and "Video" in klass


def is_hardware_decoder(factory: Any) -> bool:
    """Whether a decoder factory is a hardware one (any known family, or classed as Hardware)."""
    name = factory.get_name()
    known = any(name in names for names in HARDWARE_DECODERS.values())
    return known or "Hardware" in (factory.get_metadata("klass") or "")


def _can_sink(name: str, caps: Any) -> bool:
    from gi.repository import Gst

    factory = Gst.ElementFactory.find(name)
    return factory is not None and caps is not None and factory.can_sink_any_caps(caps)


def registry_has(name: str) -> bool:
    """Whether an element factory is in this process's GStreamer registry."""
    from gi.repository import Gst

    return Gst.ElementFactory.find(name) is not None


def plan_decoding(
    requested: str, camera_id: str = "", has: Callable[[str], bool] = registry_has
) -> DecoderPlan:
    """Resolve a camera's ``decode`` setting against the registry (``has``: is a factory present).

    Raises:
        DecoderUnavailableError: an explicit hardware family with none of its decoders present.
    """
    if requested == "software":
        return DecoderPlan(requested, "software")
    families = AUTO_ORDER if requested == "auto" else (requested,)
    for family in families:
        if family not in HARDWARE_DECODERS:
            raise ValueError(f"unknown decode choice {requested!r}")
        present = tuple(name for name in HARDWARE_DECODERS[family] if has(name))
        convert = CONVERTERS.get(family)
        if present and (convert is None or has(convert)):
            plan = DecoderPlan(requested, family, present, convert)
            logger.info("camera %s: decode %s -> %s (%s)", camera_id, requested, family, ", ".join(present))
            return plan
    if requested != "auto":
        wanted = HARDWARE_DECODERS[requested] + ((CONVERTERS[requested],) if requested in CONVERTERS else ())
        raise DecoderUnavailableError(
            f"decode: {requested} needs {', '.join(wanted)} in the GStreamer registry and this machine has "
            f"none of them (install {APT_HINT[requested]}), or set decode: auto or software"
        )
    logger.info(
        "camera %s: decode auto -> software (no hardware decoder in the GStreamer registry)", camera_id
    )
    return DecoderPlan(requested, "software")
