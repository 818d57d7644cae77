"""Pose cues as a user meets them: the API and ``query show`` show each query's cue, the agent
converts MoveNet on first start and says which queries it evaluates from cues alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.api.app import ApiContext, create_app
from agent.api.server import ApiServer
from agent.pose.assembly import build_pose_stage
from agent.pose.config import PoseConfig
from agent.pose.cue_matcher import CueFusion
from agent.queries import QueryRegistry
from agent.queries.startup import StartupQuery, register_startup_queries
from tests.agent.api.test_api import TOKEN, call

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
REPO = Path(__file__).resolve().parents[3]


def test_api_shows_the_cue_of_every_query(tmp_path: Path, pose_config: PoseConfig) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    stage = build_pose_stage(pose_config, registry, tmp_path)
    context = ApiContext(
        registry=registry,
        token=TOKEN,
        health=lambda: {"status": "ok"},
        metrics=lambda: "",
        cue_mapping=stage.mapping_view,
    )
    server = ApiServer(create_app(context), "127.0.0.1", 0)
    server.start()
    try:
        status, created = call(server, "POST", "/queries", {"text": "someone lying on the floor"})
        assert status == 201 and created["cue"]["cue"] == "lying" and created["cue"]["confidence"] > 0.5
        call(server, "POST", "/queries", {"text": "a person in a red jacket"})
        status, listed = call(server, "GET", "/queries")
        assert status == 200
        cues = {q["text"]: q["cue"] for q in listed}
        assert cues["a person in a red jacket"]["cue"] is None
        assert "similar" in cues["a person in a red jacket"]["reason"]
    finally:
        server.stop()
        stage.analyzer.close()
        registry.close()


def test_startup_queries_are_added_once_and_edits_are_kept(tmp_path: Path) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    wanted = [
        StartupQuery(text="a person running"),
        StartupQuery(text="a person falling down", severity="critical"),
    ]
    assert len(register_startup_queries(registry, wanted)) == 2
    first = registry.list_queries()[0]
    registry.set_enabled(first.id, False)
    assert register_startup_queries(registry, wanted) == []
    assert not registry.get(first.id).enabled
    registry.close()


def test_fusion_blends_the_cue_into_mapped_queries_only(tmp_path: Path, pose_config: PoseConfig) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    running = registry.add("a person running")
    coat = registry.add("a man in a black coat")
    stage = build_pose_stage(pose_config, registry, tmp_path)
    stage.cues.refresh(force=True)
    track = stage.analyzer.tracks.setdefault(("cam", 1), _track(stage, running_value=1.0))
    assert track.cues.values["running"] == 1.0
    fusion = CueFusion(stage.analyzer, stage.cues, cue_weight=0.5)
    clip = np.array([[0.2, 0.2]], np.float32)
    fused = fusion.fuse(clip, [("cam", 1)], [running, coat])
    weight = 0.5 * stage.cues.mappings[running.id].confidence
    assert fused[0, 0] == pytest.approx((1 - weight) * 0.2 + weight * 1.0, abs=1e-6)
    assert fused[0, 1] == pytest.approx(0.2)  # maps to no cue: CLIP alone
    stage.analyzer.close()
    registry.close()


def _track(stage, running_value: float):
    from agent.pose.analyzer import PoseTrack
    from agent.pose.cues import Posture, TrackCues

    cues = TrackCues(stage.analyzer.config.cues)
    cues.posture = Posture(1.0, 0.0, 0.0, 0.0, {})
    cues.values = {"running": running_value}
    return PoseTrack(cues)


def test_query_show_prints_the_mapping(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    db = str(tmp_path / "q.db")
    added = subprocess.run(
        [sys.executable, "-m", "agent.cli", "query", "add", "a man running away", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    assert "added query 1" in added.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "agent.cli", "query", "show", "1", "--db", db],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["cue"]["cue"] == "running"


@pytest.mark.slow
def test_run_converts_movenet_on_first_start_and_names_what_it_evaluates(tmp_path: Path) -> None:
    pytest.importorskip("tflite")
    if not SAMPLE.exists():
        pytest.skip("the sample video (Debian opencv-doc) is missing")
    config = tmp_path / "site.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"cameras:\n  - id: sample\n    uri: {SAMPLE}\n"
        "pose: {}\n"
        "queries:\n  - text: a person running\n  - text: a man in a black coat\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", str(config), "--max-frames", "12"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "converting the packaged movenet_lightning.tflite" in done.stderr
    assert (tmp_path / "state" / "models" / "pose" / "manifest.json").is_file()
    assert "evaluated from pose cues alone" in done.stderr and "-> running" in done.stderr
    assert "Not evaluated" in done.stderr and "a man in a black coat" in done.stderr
    assert "not evaluated (no CLIP model, and they map to no behaviour cue)" in done.stdout


def test_the_pose_path_imports_no_torch(tmp_path: Path, pose_model_dir: Path) -> None:
    """MoveNet through onnxruntime, the cues, the cue matcher and MiniLM, in a fresh interpreter."""
    script = f"""
import sys
import numpy as np
from pathlib import Path
from agent.pose.assembly import build_pose_stage
from agent.pose.config import PoseConfig
from agent.queries import QueryRegistry
registry = QueryRegistry(Path({str(tmp_path / "w.db")!r}))
registry.add("a person falling down")
config = PoseConfig(model_dir=Path({str(pose_model_dir)!r}))
stage = build_pose_stage(config, registry, Path({str(tmp_path)!r}))
stage.analyzer.estimator.estimate([(np.zeros((100, 100, 3), np.uint8), (10, 10, 40, 90))])
print(stage.startup_message(clip=False))
heavy = sorted(m for m in ("torch", "transformers", "ultralytics", "sentence_transformers", "tensorflow")
               if m in sys.modules)
assert not heavy, heavy
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "-> fall" in done.stdout


@pytest.mark.slow
def test_the_demo_config_with_pose_runs_without_torch(tmp_path: Path) -> None:
    """``configs/demo.yaml`` as shipped (pose, cue queries), first start included: no torch, no
    transformers, no ultralytics, no sentence-transformers imported."""
    pytest.importorskip("tflite")
    if not SAMPLE.exists():
        pytest.skip("the sample video (Debian opencv-doc) is missing")
    demo = (REPO / "configs" / "demo.yaml").read_text()
    config = tmp_path / "demo.yaml"
    config.write_text(
        demo.replace("site: demo", f"site: demo\nstate_dir: {tmp_path / 'data'}").replace(
            "out/demo", str(tmp_path / "out")
        )
    )
    script = (
        "import json, sys\n"
        "from agent.cli import main\n"
        "code = main(['run', sys.argv[2], '--max-frames', '6'])\n"
        "json.dump(sorted({n.split('.')[0] for n in sys.modules}), open(sys.argv[1], 'w'))\n"
        "sys.exit(code)\n"
    )
    listing = tmp_path / "modules.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(listing), str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "evaluated from pose cues alone" in done.stderr
    heavy = {"torch", "torchvision", "ultralytics", "transformers", "sentence_transformers", "tensorflow"}
    assert heavy.isdisjoint(json.loads(listing.read_text()))


def test_a_config_query_without_a_cooldown_uses_the_alerts_cooldown(tmp_path: Path) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    register_startup_queries(
        registry,
        [StartupQuery(text="a person running"), StartupQuery(text="a person falling down", cooldown_s=5)],
    )
    cooldowns = {query.text: query.cooldown_s for query in registry.list_queries()}
    assert cooldowns == {"a person running": None, "a person falling down": 5.0}
    registry.close()
