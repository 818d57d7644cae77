"""Derived data never stops the agent: a corrupt search index is replaced at start with one warning,
and a search index on a full disk (a real tmpfs) neither fails the run nor its shutdown."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.fixtures.small_fs import fill, small_tmpfs
from tests.reliability.agent_process import AgentProcess, watchword


def _config(tmp_path: Path, clip: Path, ssd: Path, camera: str, search: Path | None = None) -> Path:
    config = tmp_path / "site.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"cameras:\n  - {camera}\n"
        f"detector: {{type: ssd-mobilenet, model_dir: '{ssd}'}}\n"
        "matching:\n"
        f"  embedder: {{model_dir: '{clip}', engine: {{type: onnxruntime, providers: [cpu]}}}}\n"
        "  window_s: 1\n  embed_interval_s: 0.2\n"
        "search: {flush_interval_s: 0.2" + ("" if search is None else f", directory: '{search}'") + "}\n"
        "alerts:\n  sinks:\n    - {type: jsonl, path: " + str(tmp_path / "alerts.jsonl") + "}\n"
    )
    return config


def test_a_corrupt_search_index_is_replaced_and_the_agent_runs(
    tmp_path: Path, clip_fp32: Path, ssd_model_dir: Path
) -> None:
    config = _config(
        tmp_path, clip_fp32, ssd_model_dir, "{id: live, uri: 'test://?fps=5&width=160&height=120'}"
    )
    index = tmp_path / "state" / "search" / "tracks.db"
    index.parent.mkdir(parents=True)
    index.write_bytes(b"SQLite format 3\0" + bytes(range(256)) * 64)  # a header, then garbage

    done = watchword("run", str(config), "--duration", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line and "search index" in line]
    assert len(warnings) == 1 and "replaced by a new, empty one" in warnings[0], warnings
    with sqlite3.connect(index) as db:
        assert db.execute("SELECT COUNT(*) FROM tracks").fetchone()[0] == 0


@pytest.mark.slow
def test_a_full_search_disk_fails_neither_the_run_nor_its_shutdown(
    tmp_path: Path, clip_fp32: Path, ssd_model_dir: Path, sample_video: Path
) -> None:
    with small_tmpfs(tmp_path / "small", "1m") as root:
        camera = f"{{id: sample, uri: '{sample_video}', analysis_fps: 5, loop: true}}"
        config = _config(tmp_path, clip_fp32, ssd_model_dir, camera, root / "search")
        agent = AgentProcess(config, tmp_path, "--duration", "40")
        try:
            agent.wait_for("alerts: started")  # the index is open; now its disk fills up
            filler = root / "filler.bin"
            fill(filler)
            agent.wait_for("disk is full")
            filler.unlink()
            agent.wait_for("writing works again")
            fill(filler)  # and full again, for the shutdown's last write
            deadline = time.monotonic() + 60
            while agent.output().count("disk is full") < 2:
                assert time.monotonic() < deadline, agent.output()
                time.sleep(0.1)
            code, _ = agent.terminate()
        finally:
            agent.kill()
        output = agent.output()
        assert code == 0, output
        assert "Traceback" not in output and "FOREIGN KEY" not in output
        warnings = [line for line in output.splitlines() if "WARNING" in line and "search index" in line]
        assert len(warnings) == 2, warnings  # one per outage
