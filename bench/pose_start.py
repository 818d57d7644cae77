"""The pose stage's start, before and after the text-embedding cache, side by side in one run.

Each measurement is a fresh interpreter (imports not counted) that starts the pose stage as
``watchword run`` does for ``configs/demo.yaml``: ``build_pose_stage`` (MoveNet, all-MiniLM-L6-v2, the
cue vocabulary), the standing queries' mappings (``startup_message``) and the model's release. The
"before" tree is another checkout of the code (e.g. ``git archive <commit> | tar -x -C DIR``); the two
trees alternate, sharing one state directory (its MoveNet conversion; only "after" uses the cache,
which a first, untimed "after" run fills). Prints per-run seconds, sentence-model loads and peak RSS.

    python -m bench.pose_start --before DIR [--runs 5] [--config configs/demo.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_START = """
import json, resource, sys, time
from pathlib import Path
from agent.config import load_config
from agent.pose.assembly import build_pose_stage
from agent.queries import QueryRegistry
from agent.queries.startup import register_startup_queries
config_path, state_dir = Path(sys.argv[1]), Path(sys.argv[2])
config = load_config(config_path)
registry = QueryRegistry(state_dir / "watchword.db")
register_startup_queries(registry, config.queries)
t0 = time.perf_counter()
stage = build_pose_stage(config.pose, registry, state_dir)
t1 = time.perf_counter()
stage.startup_message(clip=False)
stage.release_sentence_model()
t2 = time.perf_counter()
print(json.dumps({
    "build_s": t1 - t0, "mappings_s": t2 - t1, "total_s": t2 - t0,
    "loads": getattr(stage.sentence, "loads", None),
    "tokenizers_imported": "tokenizers" in sys.modules,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def start_once(tree: Path, config: Path, state_dir: Path) -> dict[str, float]:
    """One pose-stage start with the code of ``tree``; its figures."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", _START, str(config), str(state_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tree,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pose start with {tree} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code before")
    parser.add_argument("--after", type=Path, default=ROOT, help="a checkout of the code after (this one)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    with tempfile.TemporaryDirectory(prefix="watchword-pose-start-") as work:
        state_dir = Path(work)
        config = state_dir / "config.yaml"
        config.write_text(args.config.read_text(encoding="utf-8") + f"\nstate_dir: {state_dir}\n")
        first = start_once(trees["after"], config, state_dir)  # converts MoveNet, fills the cache
        print(f"after, cold cache (untimed warm-up): {first['total_s']:.3f} s, loads {first['loads']}")
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for run in range(args.runs):
            order = list(trees) if run % 2 == 0 else list(reversed(trees))
            for name in order:
                results[name].append(start_once(trees[name], config, state_dir))
        print(
            f"{'run':>4} {'tree':>7} {'build s':>8} {'maps s':>7} {'total s':>8} {'loads':>5} {'RSS MiB':>8}"
        )
        for run in range(args.runs):
            for name in trees:
                r = results[name][run]
                print(
                    f"{run + 1:>4} {name:>7} {r['build_s']:8.3f} {r['mappings_s']:7.3f} {r['total_s']:8.3f}"
                    f" {r['loads'] if r['loads'] is not None else '-':>5} {r['peak_rss_mib']:8.0f}"
                )
        for name in trees:
            totals = [r["total_s"] for r in results[name]]
            rss = [r["peak_rss_mib"] for r in results[name]]
            print(
                f"{name:>7}: total median {statistics.median(totals):.3f} s "
                f"(min {min(totals):.3f}, max {max(totals):.3f}), "
                f"peak RSS median {statistics.median(rss):.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
