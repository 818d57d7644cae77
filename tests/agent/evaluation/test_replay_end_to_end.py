"""``watchword run --jsonl`` on a clip of the sample video with the tiny CLIP export, then
``watchword eval replay``: the frame records replay to exactly the alerts the run raised, and a
second whole-agent run over the same file (``--video``) raises them again (media time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.queries import QueryRegistry
from tests.fixtures.sources import sample_clip

CLIP_FRAMES = 60  # 6 s of the 10 frames/s sample video


def _opened(alerts_jsonl: Path) -> list[tuple[str, int, int, float]]:
    events = [json.loads(line) for line in alerts_jsonl.read_text().splitlines() if line.strip()]
    return sorted(
        (e["camera"], e["query_id"], e["track_id"], e["media"]["started_s"])
        for e in events
        if e["event"] == "opened"
    )


def _replayed(report: dict[str, Any]) -> list[tuple[str, int, int, float]]:
    return sorted((a["camera"], a["query_id"], a["track_id"], a["time_s"]) for a in report["alerts"])


@pytest.mark.slow
def test_replaying_a_run_gives_the_alerts_of_the_run(
    tmp_path: Path, clip_fp32: Path, sample_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = sample_clip(sample_video, tmp_path / "clip.avi", CLIP_FRAMES)
    registry = QueryRegistry(tmp_path / "state" / "watchword.db")
    critical = registry.add("a person falling down", severity="critical", threshold=0.15).id
    info = registry.add("someone climbing the fence", severity="info", threshold=0.2).id
    registry.close()
    alerts_jsonl = tmp_path / "alerts.jsonl"
    config = tmp_path / "site.yaml"
    config.write_text(
        f"""
site: replay-test
state_dir: {tmp_path}/state
cameras:
  - {{id: c1, uri: "{clip}"}}
detector: {{type: ssd-mobilenet, batch_size: 4}}
matching:
  embedder: {{model_dir: "{clip_fp32}", engine: {{type: onnxruntime, providers: [cpu]}}}}
  window_s: 1
  embed_interval_s: 0.5
alerts:
  cooldown_s: 30
  sinks: [{{type: jsonl, path: "{alerts_jsonl}"}}]
"""
    )
    frames = tmp_path / "frames.jsonl"
    assert main(["run", str(config), "--jsonl", str(frames)]) == 0
    live = _opened(alerts_jsonl)
    assert {query for _, query, _, _ in live} == {critical, info}, "both queries alert (no starvation)"
    records = [json.loads(line) for line in frames.read_text().splitlines()]
    assert len(records) == CLIP_FRAMES
    assert [r["media_time"] for r in records] == pytest.approx([i / 10 for i in range(CLIP_FRAMES)])
    sampled = [r for r in records if "samples" in r]
    assert sampled and all(set(r["samples"]) <= set(r["scores"]) for r in sampled)

    report_path = tmp_path / "frames-report.json"
    assert (
        main(
            ["eval", "replay", "--frames", str(frames), "--config", str(config), "--report", str(report_path)]
        )
        == 0
    )
    assert _replayed(json.loads(report_path.read_text())) == live

    video_report = tmp_path / "video-report.json"
    args = ["eval", "replay", "--video", str(clip), "--config", str(config), "--report", str(video_report)]
    assert main(args) == 0
    assert _replayed(json.loads(video_report.read_text())) == live, "a second run on media time: the same"
    assert alerts_jsonl.read_text().count('"opened"') == len(live), "sinks are off in a replay"
    assert "overall" in capsys.readouterr().out


@pytest.mark.slow
def test_the_demos_cue_alerts_replay_from_its_records(
    tmp_path: Path,
    sample_video: Path,
    pose_model_dir: Path,
    ssd_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Finding 9: the demo (behaviour cues, no CLIP) raised 2 alerts and its ``--frames`` replay 0:
    the replay read ``samples`` only, not the ``cue_samples`` the records carry. The demo's own
    config on its first 13 s (the man standing still near the door from about 4 s)."""
    clip = sample_clip(sample_video, tmp_path / "clip.avi", 130)
    alerts_jsonl = tmp_path / "alerts.jsonl"
    demo = Path(__file__).resolve().parents[3] / "configs" / "demo.yaml"
    text = demo.read_text().replace("/usr/share/doc/opencv-doc/examples/data/vtest.avi", str(clip))
    text += f"""
state_dir: {tmp_path}/state
alerts:
  sinks: [{{type: jsonl, path: "{alerts_jsonl}"}}]
"""
    text = text.replace("detector:\n", f"detector:\n  model_dir: {ssd_model_dir}\n", 1)
    text = text.replace("pose:\n", f"pose:\n  model_dir: {pose_model_dir}\n  export_if_missing: false\n", 1)
    text = text.replace("output:\n  jsonl: out/demo/frames.jsonl\n  video_dir: out/demo/video\n", "")
    config = tmp_path / "demo.yaml"
    config.write_text(text)
    frames = tmp_path / "frames.jsonl"
    assert main(["run", str(config), "--jsonl", str(frames)]) == 0
    live = _opened(alerts_jsonl)
    assert live, "the man standing still raises an alert"
    assert any("cue_samples" in json.loads(line) for line in frames.read_text().splitlines())
    report_path = tmp_path / "report.json"
    args = ["eval", "replay", "--frames", str(frames), "--config", str(config), "--report", str(report_path)]
    assert main(args) == 0
    assert _replayed(json.loads(report_path.read_text())) == live
    assert "overall" in capsys.readouterr().out
