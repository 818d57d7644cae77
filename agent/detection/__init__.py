"""Object detection: the :class:`Detector` interface and its backends, chosen by ``detector.type``.

Backends are imported only when built, so ``import agent.detection`` loads neither OpenCV's DNN
model nor ultralytics and torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent.config import DetectorConfig, SSDDetectorConfig, YoloDetectorConfig
from agent.detection.base import Detector, DetectorError

__all__ = ["BACKENDS", "Detector", "DetectorError", "build_detector"]


def _build_ssd(config: SSDDetectorConfig, cache_dir: Path | None) -> Detector:
    from agent.detection.ssd import SSDMobileNetDetector

    return SSDMobileNetDetector(config, cache_dir)


def _build_yolo(config: YoloDetectorConfig, cache_dir: Path | None) -> Detector:
    from agent.detection.yolo import YoloDetector

    return YoloDetector(config)  # its TensorRT engines have their own cache (detector.engine.cache_dir)


BACKENDS: Mapping[str, Callable[[Any, Path | None], Detector]] = MappingProxyType(
    {"ssd-mobilenet": _build_ssd, "yolo": _build_yolo}
)


def build_detector(config: DetectorConfig, cache_dir: Path | None = None) -> Detector:
    """Build, load and warm up the detector ``config.type`` names.

    Args:
        config: the ``detector`` section.
        cache_dir: where start-up checks keep their results for the next start (the agent's
            ``<state_dir>/cache``); None runs them every time.

    Raises:
        DetectorError: when the model is missing, unreadable or corrupt, or its runtime is not installed.
    """
    try:
        build = BACKENDS[config.type]
    except KeyError:
        raise DetectorError(f"unknown detector type {config.type!r}; known: {', '.join(BACKENDS)}") from None
    return build(config, cache_dir)
