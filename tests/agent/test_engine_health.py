"""GPU honesty at the agent level: a config asking for CUDA on a machine without it stops the start,
or, with ``allow_cpu_fallback: true``, runs with ``/health`` degraded and a WARNING at every status line.

This machine has no GPU; the CPU-only onnxruntime here is exactly the "provider missing" case.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.service import Agent
from agent.status import StatusReporter
from tests.fixtures.tiny_models import SAMPLE_VIDEO

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_onnx(tiny_yolo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engines.ultralytics_import import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    copy = tmp_path_factory.mktemp("honesty") / tiny_yolo.name
    shutil.copyfile(tiny_yolo, copy)
    return Path(YOLO(str(copy), task="detect").export(format="onnx", imgsz=160, simplify=False, dynamic=True))


def _config(work: Path, onnx: Path, fallback: bool) -> dict[str, object]:
    engine = {"type": "onnxruntime", "providers": ["cuda"], "allow_cpu_fallback": fallback}
    return {
        "site": "honesty",
        "state_dir": str(work / "state"),
        "cameras": [{"id": "sample", "uri": str(SAMPLE_VIDEO), "max_width": 384, "max_height": 288}],
        "detector": {"type": "yolo", "model": str(onnx), "imgsz": 160, "engine": engine},
    }


@pytest.fixture(autouse=True)
def _needs_a_machine_without_cuda() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime here has CUDA; bench/gpu_check.sh checks the GPU side")
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"{SAMPLE_VIDEO} is missing (Debian package opencv-doc)")


@pytest.mark.slow
def test_cuda_asked_and_missing_stops_watchword_run_with_the_reason(tmp_path: Path, tiny_onnx: Path) -> None:
    import yaml

    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, tiny_onnx, fallback=False)), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", str(config), "--max-frames", "3"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode != 0
    assert "lacks ['cuda']" in result.stderr and "allow_cpu_fallback" in result.stderr
    assert "onnxruntime-gpu" in result.stderr


@pytest.mark.slow
def test_cpu_fallback_runs_degraded_in_health_and_warns_at_every_status_line(
    tmp_path: Path, tiny_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = AgentConfig.model_validate(_config(tmp_path, tiny_onnx, fallback=True))
    agent = Agent(config, duration_s=120)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(s.counters.frames for s in agent.pipeline.status()):
            time.sleep(0.1)
        health = agent.health()
        caplog.set_level(logging.INFO, logger="agent.status")
        reporter = StatusReporter(agent.pipeline.status, 3600, warnings=agent.engine_warnings)
        try:
            for _ in range(2):
                reporter.log_once()
        finally:
            reporter.close()
    finally:
        agent.stop()
        runner.join(timeout=30)
        agent.close()
    assert health["status"] == "degraded"
    (engine,) = health["engines"]
    assert engine["status"] == "degraded" and "allow_cpu_fallback" in engine["reason"]
    assert any("lacks ['cuda']" in problem for problem in health["problems"])
    warnings = [
        r
        for r in caplog.records
        if r.name == "agent.status" and r.levelno == logging.WARNING and "DEGRADED" in r.getMessage()
    ]
    assert len(warnings) == 2, "one warning per status line, every time"
