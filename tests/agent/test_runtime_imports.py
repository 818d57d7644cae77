"""`watchword run` imports no torch, ultralytics or transformers unless the config asks for a torch model,
and nothing the run does not use (other commands, the API, the ``onnx`` package) on the demo's path.

Each run is a real ``watchword run`` in a subprocess (the sample video, a few frames); when the
command returns, the process writes the names of the modules it imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.fixtures.tiny_models import SAMPLE_VIDEO

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "torchvision", "ultralytics", "transformers"}

RUN_AND_LIST_MODULES = textwrap.dedent(
    """
    import json, sys

    from agent.cli import main

    # argv given: the command returns instead of leaving through os._exit, so the listing is written.
    code = main(["run", sys.argv[2], "--max-frames", "6"])
    with open(sys.argv[1], "w") as out:
        json.dump(sorted(sys.modules), out)
    sys.exit(code)
    """
)


def _run_and_list_modules(config: Path, work: Path) -> set[str]:
    """The full names of the modules a ``watchword run`` of ``config`` imported."""
    listing = work / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, str(listing), str(config)],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "out" / "frames.jsonl").read_text().count("\n") >= 6, "the run analysed no frames"
    return set(json.loads(listing.read_text()))


def _top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def _config(work: Path, detector: str) -> Path:
    path = work / "config.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            site: imports
            database: {work / "watchword.db"}
            cameras:
              - id: sample
                uri: {SAMPLE_VIDEO}
                max_width: 384
                max_height: 288
            detector: {detector}
            tracker: {{type: bytetrack}}
            alerts: {{database: {work / "alerts.db"}, evidence_dir: {work / "evidence"}}}
            output: {{jsonl: {work / "out" / "frames.jsonl"}}}
            """
        ),
        encoding="utf-8",
    )
    return path


@pytest.mark.slow
def test_ssd_demo_runs_without_torch(tmp_path: Path) -> None:
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"{SAMPLE_VIDEO} is missing (Debian package opencv-doc)")
    modules = _top_level(
        _run_and_list_modules(_config(tmp_path, "{type: ssd-mobilenet, batch_size: 2}"), tmp_path)
    )
    assert "cv2" in modules and "agent" in modules
    assert not modules & HEAVY, f"the SSD demo imported {sorted(modules & HEAVY)}"


@pytest.mark.slow
def test_yolo_onnx_runs_without_torch(tmp_path: Path, tiny_yolo: Path) -> None:
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"{SAMPLE_VIDEO} is missing (Debian package opencv-doc)")
    from engines.ultralytics_import import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    copy = tmp_path / "model" / tiny_yolo.name
    copy.parent.mkdir()
    shutil.copyfile(tiny_yolo, copy)
    onnx = Path(YOLO(str(copy), task="detect").export(format="onnx", imgsz=160, simplify=False, dynamic=True))
    detector = f"{{type: yolo, model: {onnx}, imgsz: 160, engine: {{type: onnxruntime, providers: [cpu]}}}}"
    modules = _top_level(_run_and_list_modules(_config(tmp_path, detector), tmp_path))
    assert "onnxruntime" in modules
    assert not modules & HEAVY, f"the YOLO ONNX run imported {sorted(modules & HEAVY)}"


@pytest.mark.slow
def test_a_pt_model_does_load_torch(tmp_path: Path, tiny_yolo: Path) -> None:
    """The check above can fail: a config that asks for a torch model shows torch in the listing."""
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"{SAMPLE_VIDEO} is missing (Debian package opencv-doc)")
    modules = _top_level(
        _run_and_list_modules(_config(tmp_path, f"{{type: yolo, model: {tiny_yolo}, imgsz: 160}}"), tmp_path)
    )
    assert {"torch", "ultralytics"} <= modules


OTHER_COMMANDS = {
    f"agent.commands.{name}"
    for name in ("query", "calibrate", "models", "export", "eval", "alerts", "camera", "search", "replay")
}
API = {"starlette", "fastapi", "uvicorn"}


@pytest.mark.slow
def test_the_demo_run_loads_only_what_it_uses(
    tmp_path: Path, pose_model_dir: Path, ssd_model_dir: Path
) -> None:
    """``configs/demo.yaml`` (SSD, pose cues, no API, no CLIP) with its SSD and MoveNet already
    converted: no other command's module, no web framework, no ``onnx`` package (the graphs'
    manifests are verified instead), no CLIP encoder. Each of these cost the start-up 0.02-0.1 s."""
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"{SAMPLE_VIDEO} is missing (Debian package opencv-doc)")
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    config["state_dir"] = str(tmp_path / "state")
    config["cameras"][0]["uri"] = str(SAMPLE_VIDEO)
    config["output"] = {"jsonl": str(tmp_path / "out" / "frames.jsonl")}
    config["pose"]["model_dir"] = str(pose_model_dir)
    config["detector"]["model_dir"] = str(ssd_model_dir)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    modules = _run_and_list_modules(path, tmp_path)
    assert {"agent.commands.run", "agent.pose.estimator", "agent.alerts.manager", "onnxruntime"} <= modules
    assert not modules & OTHER_COMMANDS, f"`run` imported {sorted(modules & OTHER_COMMANDS)}"
    web = _top_level(modules) & API
    assert not web, f"a run without the API imported {sorted(web)}"
    assert "onnx" not in modules, "a converted model was parsed with the onnx package"
    assert "export.ssd_onnx" not in modules, "the SSD was converted again"
    assert "agent.embedding.encoder" not in modules, "a run without CLIP loaded the CLIP encoder"
