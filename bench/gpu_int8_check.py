"""INT8 detectors on TensorRT (a machine with a CUDA GPU): the demo's SSD quantized on ``vtest.avi``.

The SSD (real weights) is converted, quantized to QDQ on 225 frames spread over the sample video, and
built into TensorRT engines twice: fp16 from the fp32 graph and INT8 from the QDQ graph (explicit
quantization: the scales of the same calibration frames, no calibrator). On the 75 held-out frames
the INT8 engine's people are compared with ONNX Runtime's fp32 people (recall and precision at IoU
0.5, as ``watchword export ssd --int8``'s gate), and batches of 1, 4 and 8 are timed.

    PYTHONPATH=. python -m bench.gpu_int8_check [--frames 300]

Exit status: 0 pass, 1 the INT8 engine misses 0.98, 2 no TensorRT or GPU here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print("gpu_int8_check: no tensorrt here")
        return 2
    from engines import create_engine, read_manifest
    from engines.ssd_processing import SSDDecoding, preprocess
    from export.calibration import read_frames, split_frames
    from export.person_gate import person_agreement
    from export.quantize import quantize_int8
    from export.ssd import ONNX_FILE, SSDExportConfig, SSDRunner, export_ssd

    with tempfile.TemporaryDirectory(prefix="watchword-int8-gpu-") as tmp:
        work = Path(tmp)
        export_ssd(SSDExportConfig(out=work / "ssd", reference="none"))
        manifest = read_manifest(work / "ssd")
        decoding = SSDDecoding.from_manifest(manifest.extra["anchors"], manifest.extra["detection"], 300)
        frames, held_out = split_frames(read_frames(SAMPLE, args.frames))
        fp32, int8 = work / "ssd" / ONNX_FILE, work / "ssd.int8.onnx"
        quantize_int8(
            fp32, int8, ({"image": preprocess(frames[i : i + 8], 300)} for i in range(0, len(frames), 8))
        )

        def people(engine: object) -> list[np.ndarray]:
            runner = SSDRunner(engine, decoding, 300)
            rows: list[np.ndarray] = []
            for start in range(0, len(held_out), 8):
                rows += runner.people(*runner.raw(held_out[start : start + 8]), 0.4)
            return [row[:, 1:5] for row in rows]

        with create_engine("onnxruntime", fp32, providers=["cpu"], warmup=False) as engine:
            reference = people(engine)
        status = 0
        for name, graph, precision in (("fp16", fp32, "fp16"), ("int8", int8, "int8")):
            options = {"cache_dir": work / "trt", "precision": precision, "max_batch": 8, "opt_batch": 4}
            with create_engine("tensorrt", graph, **options) as engine:
                metrics = person_agreement(reference, people(engine))
                line = f"{name}: build {engine.timings.build_s:.1f} s, recall {metrics['recall']:.4f}, "
                line += f"precision {metrics['precision']:.4f}"
                for batch in (1, 4, 8):
                    image = preprocess(held_out[:batch], 300)
                    engine.infer({"image": image})
                    started, count = time.perf_counter(), 0
                    while time.perf_counter() - started < 2.0:
                        engine.infer({"image": image})
                        count += batch
                    line += f", batch {batch}: {count / (time.perf_counter() - started):.0f} frames/s"
                print(line)
                if name == "int8" and min(metrics["recall"], metrics["precision"]) < 0.98:
                    status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
