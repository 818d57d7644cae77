"""Object detection: the :class:`Detector` interface and its backends, chosen by ``detector.type``.

Backends are imported only when built, so ``import agent.detection`` loads neither OpenCV's DNN
model nor ultralytics and torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from agent.config import DetectorConfig, SSDDetectorConfig, YoloDetectorConfig
from agent.detection.base import Detector, DetectorError

__all__ = ["BACKENDS", "Detector", "DetectorError", "build_detector"]


def _build_ssd(config: SSDDetectorConfig) -> Detector:
    from agent.detection.ssd import SSDMobileNetDetector

    return SSDMobileNetDetector(config)


def _build_yolo(config: YoloDetectorConfig) -> Detector:
    from agent.detection.yolo import YoloDetector

    return YoloDetector(config)


BACKENDS: Mapping[str, Callable[[Any], Detector]] = MappingProxyType(
    {"ssd-mobilenet": _build_ssd, "yolo": _build_yolo}
)


def build_detector(config: DetectorConfig) -> Detector:
    """Build, load and warm up the detector ``config.type`` names.

    Raises:
        DetectorError: when the model is missing, unreadable or corrupt, or its runtime is not installed.
    """
    try:
        build = BACKENDS[config.type]
    except KeyError:
        raise DetectorError(f"unknown detector type {config.type!r}; known: {', '.join(BACKENDS)}") from None
    return build(config)
