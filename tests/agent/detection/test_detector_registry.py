"""Choosing a backend by config, and keeping ``import agent.detection`` light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.detection import BACKENDS, DetectorError, build_detector

REPO = Path(__file__).resolve().parents[3]


def test_every_configured_type_has_a_backend() -> None:
    from typing import get_args

    from agent.detection.config import SSDDetectorConfig, YoloDetectorConfig

    types = {
        get_args(model.model_fields["type"].annotation)[0]
        for model in (SSDDetectorConfig, YoloDetectorConfig)
    }
    assert types == set(BACKENDS)


def test_unknown_type_is_a_clear_error() -> None:
    class Fake:
        type = "retinanet"

    with pytest.raises(DetectorError, match="unknown detector type 'retinanet'"):
        build_detector(Fake())  # type: ignore[arg-type]


def test_import_does_not_load_heavy_backends() -> None:
    heavy = "{'ultralytics', 'torch', 'onnxruntime'}"
    code = f"import sys, agent.detection, agent.tracking; print(sorted({heavy} & set(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"
