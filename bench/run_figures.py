"""Start-up to first frame and peak RSS of a `watchword run` process, measured from outside.

The run is a child process; start-up is the wall time from spawning it to the first line of its
frames JSONL (the first analysed frame leaving the pipeline), and peak RSS is the kernel's
high-water mark of the process (``VmHWM`` in ``/proc/<pid>/status``), read just before it exits
polled every 10 ms. Not ``ru_maxrss``: it survives ``exec`` and so counts the pages the child
shared with a large parent between ``fork`` and ``exec``.

    python -m bench.run_figures [configs/demo.yaml] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunFigures:
    """One measured run: seconds to the first analysed frame, peak RSS in MiB, torch loaded or not."""

    first_frame_s: float
    peak_rss_mib: float
    wall_s: float
    exit_code: int


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure_run(config_path: Path, frames: int | None = None, timeout_s: float = 300.0) -> RunFigures:
    """Run ``watchword run`` on a copy of ``config_path`` whose outputs go to a temporary directory."""
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="watchword-bench-") as work:
        jsonl = Path(work) / "frames.jsonl"
        config["output"] = {"jsonl": str(jsonl)}
        config["database"] = str(Path(work) / "watchword.db")
        alerts = dict(config.get("alerts") or {})
        alerts.update(database=str(Path(work) / "alerts.db"), evidence_dir=str(Path(work) / "evidence"))
        config["alerts"] = alerts
        copy = Path(work) / "config.yaml"
        copy.write_text(yaml.safe_dump(config), encoding="utf-8")
        command = [sys.executable, "-m", "agent.cli", "run", str(copy)]
        if frames is not None:
            command += ["--max-frames", str(frames)]
        # `python -m` puts its working directory first on sys.path: run from the tree being measured.
        tree = Path(os.environ.get("PYTHONPATH", str(ROOT)).split(os.pathsep)[0] or ROOT)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        first_frame_s = float("nan")
        peak_kib = 0
        while True:
            pid, status, _usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            if first_frame_s != first_frame_s and jsonl.exists() and jsonl.stat().st_size > 0:
                first_frame_s = time.perf_counter() - started
            peak_kib = max(peak_kib, _vm_hwm_kib(process.pid) or 0)
            if time.perf_counter() - started > timeout_s:
                process.kill()
            time.sleep(0.01)
        wall_s = time.perf_counter() - started
        if first_frame_s != first_frame_s and jsonl.exists() and jsonl.stat().st_size > 0:
            first_frame_s = wall_s
        return RunFigures(first_frame_s, peak_kib / 1024, wall_s, process.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=None, help="stop after this many frames")
    args = parser.parse_args()
    runs = [measure_run(args.config, args.frames) for _ in range(args.runs)]
    for i, run in enumerate(runs):
        print(
            f"run {i}: first frame {run.first_frame_s:.2f} s, peak RSS {run.peak_rss_mib:.0f} MiB, "
            f"wall {run.wall_s:.1f} s, exit {run.exit_code}"
        )
    print(
        f"median: first frame {statistics.median(r.first_frame_s for r in runs):.2f} s, "
        f"peak RSS {statistics.median(r.peak_rss_mib for r in runs):.0f} MiB"
    )


if __name__ == "__main__":
    main()
