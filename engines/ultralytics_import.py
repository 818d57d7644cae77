"""Import ultralytics so that it never reaches the network or installs packages.

Ultralytics probes DNS at import (``ultralytics.utils.ONLINE``), sends usage events when online,
and pip-installs missing requirements at run time (``check_requirements``). An edge agent must do
none of that (house style rule 8), so every module of ours that needs ultralytics imports it through
:func:`import_ultralytics` instead of ``import ultralytics`` directly. The environment variables are
set only here, when a backend that needs ultralytics is loaded, never at ``import agent``.

It lives in ``engines`` because the agent (``.pt`` detectors) and ``export`` (``watchword export
yolo``) both load ultralytics models, and ``export`` does not import ``agent``.
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

# Read by ultralytics when ``ultralytics.utils`` is first imported.
OFFLINE_ENVIRONMENT = {
    "YOLO_OFFLINE": "1",  # is_online() returns False without a DNS lookup, which also disables events
    "YOLO_AUTOINSTALL": "0",  # check_requirements() reports a missing package instead of pip installing it
}


def import_ultralytics() -> ModuleType:
    """Import and return the ``ultralytics`` package with network access and auto-install disabled."""
    already_imported = "ultralytics.utils" in sys.modules
    if not already_imported:
        os.environ.update(OFFLINE_ENVIRONMENT)
    import cv2

    opencv_threads = cv2.getNumThreads()
    import ultralytics
    from ultralytics.utils import checks, events

    # ultralytics.utils calls cv2.setNumThreads(0) at import (for PyTorch data loaders), which made
    # OpenCV's DNN detector run on one core, at about half speed: give OpenCV its threads back.
    if not already_imported:
        cv2.setNumThreads(opencv_threads)

    # If something imported ultralytics before us, its module-level constants were already computed
    # from the environment; these are the globals the download and install paths actually consult.
    checks.AUTOINSTALL = False
    checks.ONLINE = False
    events.events.enabled = False
    if already_imported:
        logger.debug("ultralytics was imported before import_ultralytics(); its online flags were overridden")
    return ultralytics


def load_detection_model(
    path: str, device: str = "cpu", half: bool = False
) -> tuple[Any, dict[int, str], int]:
    """An ultralytics ``.pt`` detection model as a torch module ``images -> (B, 4 + classes, anchors)``.

    The module is the fused network in eval mode, on ``device`` (FP16 when ``half``), returning the
    raw head output that an ONNX export of the same model returns, so the detector's own numpy
    pre- and post-processing apply to both.

    Returns:
        (module, class names by id, the model's largest stride in pixels).

    Raises:
        ValueError: the file is not an ultralytics detection model.
    """
    import_ultralytics()
    import torch
    from ultralytics import YOLO

    model = YOLO(path, task="detect")
    if getattr(model, "task", "detect") != "detect":
        raise ValueError(f"{path} is a {model.task} model; the detector needs a detect model")
    network: Any = model.model
    names = {int(k): str(v) for k, v in dict(model.names).items()}
    stride = int(max(getattr(network, "stride", torch.tensor([32])).tolist()))
    network = network.float().eval()
    network = network.fuse() if hasattr(network, "fuse") else network

    class DetectionHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            out = self.network(images.half() if half else images)
            out = out[0] if isinstance(out, tuple | list) else out
            return out.float()

    head = DetectionHead().eval().to(device)
    if half:
        head = head.half()
    return head, names, stride
