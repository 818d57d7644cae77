"""Start-up to first frame and peak RSS of a `watchword run` process, measured from outside.

The run is a child process; start-up is the wall time from spawning it to the first line of its
frames JSONL (the first analysed frame leaving the pipeline), and peak RSS is the kernel's
high-water mark of the process (``VmHWM`` in ``/proc/<pid>/status``), read just before it exits
polled every 10 ms. Not ``ru_maxrss``: it survives ``exec`` and so counts the pages the child
shared with a large parent between ``fork`` and ``exec``.

    python -m bench.run_figures [configs/demo.yaml] [--runs 3] [--frames N] [--first-starts N]
                                [--before TREE]

``--first-starts N`` adds N first starts, each in an empty state folder of its own (a temporary
``state_dir``: every model converted, every cache made, as on a new machine), and their median.

``--before TREE`` (a checkout of another revision, e.g. ``git worktree add /tmp/old REV``) measures
that tree and this one alternately, after one opening start of each (it makes their first-start
caches and conversions, and is shown as "first start"), and prints both medians and their ratio:
on a shared machine only figures taken side by side compare. frames/s counts the analysed frames
from the first to the last (give ``--frames`` or let the file end).
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
    """One measured run: seconds from spawn to the first and to the last analysed frame (the frames
    JSONL's first line, its last growth), peak RSS in MiB, wall time and exit status."""

    first_frame_s: float
    peak_rss_mib: float
    wall_s: float
    exit_code: int
    last_frame_s: float = float("nan")
    frames: int = 0

    @property
    def frames_per_s(self) -> float:
        """Analysed frames per second from the first to the last frame (start-up and exit left out)."""
        span = self.last_frame_s - self.first_frame_s
        return (self.frames - 1) / span if self.frames > 1 and span > 0 else float("nan")


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure_run(
    config_path: Path,
    frames: int | None = None,
    timeout_s: float = 300.0,
    tree: Path | None = None,
    first_start: bool = False,
) -> RunFigures:
    """Run ``watchword run`` on a copy of ``config_path`` whose outputs go to a temporary directory.

    ``tree`` is the source tree to run (default: the first ``PYTHONPATH`` entry, else this one); its
    ``state_dir`` (``data`` relative to it unless the config sets one) keeps the start-up caches.
    ``first_start``: run on an empty temporary ``state_dir`` instead (a first start).
    """
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="watchword-bench-") as work:
        if first_start:
            config["state_dir"] = str(Path(work) / "state")
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
        if tree is None:
            tree = Path(os.environ.get("PYTHONPATH", str(ROOT)).split(os.pathsep)[0] or ROOT)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        first_frame_s = last_frame_s = float("nan")
        size = 0
        peak_kib = 0
        while True:
            pid, status, _usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            grown = jsonl.stat().st_size if jsonl.exists() else 0
            if grown > size:
                size, last_frame_s = grown, time.perf_counter() - started
                if first_frame_s != first_frame_s:
                    first_frame_s = last_frame_s
            peak_kib = max(peak_kib, _vm_hwm_kib(process.pid) or 0)
            if time.perf_counter() - started > timeout_s:
                process.kill()
            time.sleep(0.01)
        wall_s = time.perf_counter() - started
        if jsonl.exists() and jsonl.stat().st_size > size:  # written after the last poll
            last_frame_s = wall_s
            if first_frame_s != first_frame_s:
                first_frame_s = wall_s
        frames_seen = len(jsonl.read_bytes().splitlines()) if jsonl.exists() else 0
        return RunFigures(
            first_frame_s, peak_kib / 1024, wall_s, process.returncode, last_frame_s, frames_seen
        )


def _median(runs: list[RunFigures]) -> tuple[float, float, float]:
    return (
        statistics.median(r.first_frame_s for r in runs),
        statistics.median(r.peak_rss_mib for r in runs),
        statistics.median(r.frames_per_s for r in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--first-starts", type=int, default=0, help="first starts, each on an empty state")
    parser.add_argument("--before", type=Path, metavar="TREE", help="another checkout, measured alternately")
    args = parser.parse_args()
    if args.before is None:
        runs = [measure_run(args.config, args.frames) for _ in range(args.runs)]
        firsts = [measure_run(args.config, args.frames, first_start=True) for _ in range(args.first_starts)]
        for label, measured_runs in (("run", runs), ("first start", firsts)):
            for i, run in enumerate(measured_runs):
                print(
                    f"{label} {i}: first frame {run.first_frame_s:.2f} s, peak RSS {run.peak_rss_mib:.0f} "
                    f"MiB, {run.frames} frames at {run.frames_per_s:.1f} f/s, wall {run.wall_s:.1f} s, "
                    f"exit {run.exit_code}"
                )
        if runs:
            first, rss, fps = _median(runs)
            print(f"median: first frame {first:.2f} s, peak RSS {rss:.0f} MiB, {fps:.1f} frames/s")
        if firsts:
            first, rss, fps = _median(firsts)
            print(
                f"median of {len(firsts)} first starts (empty state folder): first frame {first:.2f} s, "
                f"peak RSS {rss:.0f} MiB"
            )
        return
    trees = {"before": args.before.resolve(), "this tree": ROOT}
    opening = {name: measure_run(args.config, args.frames, tree=tree) for name, tree in trees.items()}
    measured: dict[str, list[RunFigures]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, tree in trees.items():
            measured[name].append(measure_run(args.config, args.frames, tree=tree))
    print(f"{args.config.name}, {args.runs} alternating runs each (median; all runs in brackets)")
    print(
        f"{'tree':<10} {'first start (s)':>16} {'first frame (s)':>16} {'peak RSS (MiB)':>15} "
        f"{'frames/s':>9}   runs (s)"
    )
    for name, runs in measured.items():
        first, rss, fps = _median(runs)
        each = " ".join(f"{r.first_frame_s:.2f}" for r in runs)
        print(
            f"{name:<10} {opening[name].first_frame_s:>16.2f} {first:>16.2f} {rss:>15.0f} {fps:>9.1f}"
            f"   [{each}]"
        )
    (before, before_rss, before_fps), (after, after_rss, after_fps) = (
        _median(runs) for runs in measured.values()
    )
    cold = opening["this tree"].first_frame_s / opening["before"].first_frame_s
    print(
        f"{'ratio':<10} {cold:>16.2f} {after / before:>16.2f} {after_rss / before_rss:>15.2f} "
        f"{after_fps / before_fps:>9.2f}"
    )
    print("first start: the run before the measured ones (it makes the state folder's caches and converted")
    print("models when they are absent, e.g. after `rm -rf data` in each tree)")


if __name__ == "__main__":
    main()
