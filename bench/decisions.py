"""Issue 8's decision findings on the sample video, with an exported CLIP (no real CLIP weights ship
here: the tests' tiny random CLIP export shows the mechanics, not accuracy).

Scenarios (one camera, the sample video from the start, ``--frames`` analysed frames at 10 fps):

- ``starvation``: "a person falling down" (critical, threshold 0.15) and "someone climbing the
  fence" (info, threshold 0.2), ``alerts.cooldown_s`` 60. Issue 8 finding 1: the critical query got
  no alert because the info query's pairs kept the global top-K slots.
- ``cooldown``: "a person" (threshold 0.01) with the query's own cooldown ``--cooldown`` (3600 s)
  and ``alerts.cooldown_s`` 3. Finding 2: the query's cooldown was never read.

Prints one JSON line: frames, media and wall seconds, windows, candidates, candidates suppressed by
cooldown, alerts opened per query and the (query, track, frame) of each. Windows counted against
media seconds show finding 3 (decisions on wall time); two runs with the same arguments give the
same ``opened`` list once decisions run on media time.

    PYTHONPATH=. .venv/bin/python bench/decisions.py --clip DIR [--scenario starvation] [--frames 400]

``--throughput`` instead measures records per second through the decision core, live and replay,
beside another revision (``--before TREE``), and with ``--day`` replays a day of 4 cameras at 5
frames/s (:mod:`bench.decision_throughput`)::

    PYTHONPATH=. .venv/bin/python bench/decisions.py --throughput --before /tmp/main --day

A tiny CLIP export to use as DIR (seconds on a CPU)::

    PYTHONPATH=. .venv/bin/python -c "from pathlib import Path; from tests.fixtures.tiny_models import \\
        build_tiny_clip, export_tiny_clip; d = Path('out/tiny-clip'); build_tiny_clip(d); \\
        export_tiny_clip(Path('out/clip-fp32'), d, 'fp32')"
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

from agent.config import parse_config
from agent.service import Agent

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, help="an exported CLIP (watchword export clip)")
    parser.add_argument("--throughput", action="store_true", help="records/s through the decision core")
    parser.add_argument(
        "--before", type=Path, metavar="TREE", help="throughput: another checkout, alternately"
    )
    parser.add_argument("--day", action="store_true", help="throughput: also replay a day of records")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--fps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=600.0, help="throughput: media seconds of records")
    parser.add_argument("--tracks", type=int, default=4, help="throughput: people per camera")
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=400, help="analysed frames (10 per media second)")
    parser.add_argument("--scenario", choices=["starvation", "cooldown"], default="starvation")
    parser.add_argument("--cooldown", type=float, default=3600.0, help="cooldown scenario: the query's, s")
    parser.add_argument("--jsonl", type=Path, help="also write the frame records here")
    args = parser.parse_args()
    if args.throughput:
        from bench.decision_throughput import main as throughput

        throughput(args)
        return
    if args.clip is None:
        parser.error("--clip is required (or --throughput)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-decisions-"))
    config = parse_config(
        f"""
site: bench
state_dir: {tmp}
cameras:
  - {{id: c1, uri: "{SAMPLE}"}}
detector: {{type: ssd-mobilenet, batch_size: 4}}
matching:
  embedder: {{model_dir: "{args.clip}", engine: {{type: onnxruntime, providers: [cpu]}}}}
alerts:
  cooldown_s: {3 if args.scenario == "cooldown" else 60}
  sinks: [{{type: jsonl, path: "{tmp}/alerts.jsonl"}}]
"""
    )
    agent = Agent(config, max_frames=args.frames, jsonl_path=args.jsonl)
    if args.scenario == "starvation":
        critical = agent.registry.add("a person falling down", severity="critical", threshold=0.15)
        info = agent.registry.add("someone climbing the fence", severity="info", threshold=0.2)
        names = {
            critical.id: "critical 'a person falling down'",
            info.id: "info 'someone climbing the fence'",
        }
    else:
        query = agent.registry.add("a person", threshold=0.01, cooldown_s=args.cooldown)
        names = {query.id: f"'a person' cooldown_s={args.cooldown:g}"}
    started = time.monotonic()
    summary = agent.run()
    wall_s = time.monotonic() - started
    events = [json.loads(line) for line in (tmp / "alerts.jsonl").read_text().splitlines()]
    opened = [e for e in events if e["event"] == "opened"]
    per_query = collections.Counter(e["query_id"] for e in opened)
    assert agent.decisions is not None
    counters = agent.decisions.episodes.counters
    decided = agent.decisions.stats()
    print(
        json.dumps(
            {
                "frames": summary.frames,
                "media_s": summary.frames / 10.0,
                "wall_s": round(wall_s, 1),
                "windows": decided.windows,
                "candidates": decided.candidates,
                "suppressed_cooldown": counters.suppressed_cooldown,
                "opened_per_query": {names[q]: per_query.get(q, 0) for q in names},
                "opened": sorted((e["query_id"], e["track_id"], e["frame_index"]) for e in opened),
            }
        )
    )


if __name__ == "__main__":
    main()
