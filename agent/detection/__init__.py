"""Object detection: the :class:`Detector` interface and its backends, chosen by ``detector.type``.

Backends are imported only when built, so ``import agent.detection`` loads neither OpenCV's DNN
model nor ultralytics and torch; :class:`Detector` and :class:`DetectorError` load on first use, so
that ``agent.config`` can nest :mod:`agent.detection.config` without loading the engines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from agent.detection.config import (
    DetectorConfig,
    OpenCvDnnEngineConfig,
    SSDDetectorConfig,
    YoloDetectorConfig,
)
from agent.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from agent.detection.base import Detector, DetectorError

__getattr__ = lazy_exports(
    __name__, {"Detector": "agent.detection.base", "DetectorError": "agent.detection.base"}
)

__all__ = ["BACKENDS", "Detector", "DetectorError", "build_detector"]


def _build_ssd(config: SSDDetectorConfig, state_dir: Path | None) -> Detector:
    if isinstance(config.engine, OpenCvDnnEngineConfig):
        from agent.detection.ssd_opencv import OpenCvSSDDetector

        return OpenCvSSDDetector(config, state_dir / "cache" if state_dir is not None else None)
    from agent.detection.ssd import MODEL_DIR_NAME, SSDMobileNetDetector

    return SSDMobileNetDetector(
        config, state_dir / "models" / MODEL_DIR_NAME if state_dir is not None else None
    )


def _build_yolo(config: YoloDetectorConfig, state_dir: Path | None) -> Detector:
    from agent.detection.yolo import YoloDetector

    return YoloDetector(config)  # its TensorRT engines have their own cache (detector.engine.cache_dir)


BACKENDS: Mapping[str, Callable[[Any, Path | None], Detector]] = MappingProxyType(
    {"ssd-mobilenet": _build_ssd, "yolo": _build_yolo}
)


def build_detector(config: DetectorConfig, state_dir: Path | None = None) -> Detector:
    """Build, load and warm up the detector ``config.type`` names.

    Args:
        config: the ``detector`` section.
        state_dir: the agent's state directory: a converted model is kept in its ``models/`` and
            start-up checks in its ``cache/``. None: the user's cache (``~/.cache/watchword``) holds
            converted models and the checks run every time.

    Raises:
        DetectorError: when the model is missing, unreadable or corrupt, or its runtime is not installed.
    """
    from agent.detection.base import DetectorError

    try:
        build = BACKENDS[config.type]
    except KeyError:
        raise DetectorError(f"unknown detector type {config.type!r}; known: {', '.join(BACKENDS)}") from None
    return build(config, state_dir)
