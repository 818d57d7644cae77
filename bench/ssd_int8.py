"""The demo's SSD on ONNX Runtime CPU: the fp32 export against the INT8 one, side by side in one process.

Both graphs run on the same preprocessed ``vtest.avi`` frames, interleaved (fp32, int8, fp32, ...; the
first of each pair alternates), so load from other processes falls on both alike. Prints, per batch
size, milliseconds per frame (median of the runs) and the INT8 speed-up, the load average before and
after, and the INT8 export's gate figures from its manifest.

    watchword export ssd --out /tmp/ssd-fp32
    watchword export ssd --int8 --calibration-video /usr/share/doc/opencv-doc/examples/data/vtest.avi \\
        --out /tmp/ssd-int8
    python -m bench.ssd_int8 --fp32 /tmp/ssd-fp32 --int8 /tmp/ssd-int8 [--runs 200] [--batch 1 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from engines import create_engine, read_manifest
from engines.ssd_processing import preprocess
from export.ssd import sample_frames


def _graph(directory: Path) -> Path:
    return directory / str(read_manifest(directory).graphs["detector"]["file"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fp32", type=Path, required=True, help="a `watchword export ssd` folder")
    parser.add_argument("--int8", type=Path, required=True, help="a `watchword export ssd --int8` folder")
    parser.add_argument("--runs", type=int, default=200, help="inferences of each graph per batch size")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)
    frames = preprocess(sample_frames([i * 8 for i in range(max(args.batch))]), 300)
    load_before = os.getloadavg()[0]
    rows = []
    with (
        create_engine("onnxruntime", _graph(args.fp32), providers=["cpu"]) as fp32,
        create_engine("onnxruntime", _graph(args.int8), providers=["cpu"]) as int8,
    ):
        engines = {"fp32": fp32, "int8": int8}
        for batch in args.batch:
            feed = {"image": np.ascontiguousarray(frames[:batch])}
            seconds: dict[str, list[float]] = {"fp32": [], "int8": []}
            for run in range(args.runs):
                for name in ("fp32", "int8") if run % 2 == 0 else ("int8", "fp32"):
                    started = time.perf_counter()
                    engines[name].infer(feed)
                    seconds[name].append(time.perf_counter() - started)
            ms = {name: statistics.median(values) * 1000 / batch for name, values in seconds.items()}
            rows.append((batch, ms["fp32"], ms["int8"], ms["fp32"] / ms["int8"]))
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) {load_before:.2f} -> {load_after:.2f}, {args.runs} runs each")
    print("| batch | fp32 ms/frame | int8 ms/frame | int8 speed-up |")
    print("|---|---|---|---|")
    for batch, fp32_ms, int8_ms, ratio in rows:
        print(f"| {batch} | {fp32_ms:.2f} | {int8_ms:.2f} | {ratio:.2f}x |")
    manifest = read_manifest(args.int8)
    for parity in manifest.parity:
        if "int8" in str(parity.get("backend")):
            print(f"gate: {parity}")
    for attempt in manifest.extra.get("int8_attempts", []):
        print(f"attempt: {attempt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
