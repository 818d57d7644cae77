"""GPU check: TensorRT FP16 engines for a ViT-B/16-sized CLIP image encoder and a YOLOv8n-sized detector.

For each model: export ONNX here (random weights; timing and parity do not depend on them), build a
FP16 TensorRT engine into a fresh cache, check it against ONNX Runtime, load it again (a cache hit),
and time batches of 1, 8 and 32 on TensorRT and on ONNX Runtime. Run through ``bench/gpu_check.sh``,
which bounds the whole run to 8 minutes. Exit status 0 when every check passed, 1 otherwise, 2 when
the machine lacks TensorRT or a GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCHES = (1, 8, 32)
STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {message}", flush=True)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def _time(
    engine: Any, inputs: dict[str, np.ndarray], seconds: float = 3.0, warmup: int = 3, min_calls: int = 5
) -> float:
    """Mean seconds per call over about ``seconds`` (and at least ``min_calls``) steady-state calls."""
    for _ in range(warmup):
        engine.infer(inputs)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < min_calls:
        engine.infer(inputs)
        calls += 1
    return (time.perf_counter() - started) / calls


def _clip_onnx(work: Path) -> tuple[Path, Any, Callable[[int], dict[str, np.ndarray]]]:
    from bench.random_models import clip_image_encoder
    from export.onnx_graph import torch_to_onnx
    from export.specs import clip_vision_spec

    encoder = clip_image_encoder(patch_size=16)
    spec = clip_vision_spec(224, 512, max_batch=32)
    path = work / "clip-vit-b16-vision.onnx"
    torch_to_onnx(encoder, spec, path, opset=17)
    rng = np.random.default_rng(1)
    return path, spec, lambda batch: spec.dummy_inputs(batch, rng)


def _yolo_onnx(work: Path) -> tuple[Path, Any, Callable[[int], dict[str, np.ndarray]]]:
    from agent._ultralytics import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    from export.yolo import YoloExportConfig, export_yolo

    weights = work / "yolov8n-random.pt"
    YOLO("yolov8n.yaml").save(str(weights))
    result = export_yolo(YoloExportConfig(weights=weights, out=work / "yolo", imgsz=640, max_batch=32))
    from engines import EngineSpec

    spec = EngineSpec.from_dict(result.manifest.graphs["detector"])
    rng = np.random.default_rng(2)
    return (
        work / "yolo" / "yolov8n-random.onnx",
        spec,
        lambda batch: {"images": rng.random((batch, 3, 640, 640), dtype=np.float32)},
    )


def check(
    name: str,
    onnx_path: Path,
    spec: Any,
    inputs: Callable[[int], dict[str, np.ndarray]],
    cache: Path,
    providers: list[str],
) -> tuple[bool, list[str]]:
    from engines import create_engine
    from export.specs import DETECTION_TOLERANCE

    rows, ok = [], True
    log(f"{name}: building a FP16 TensorRT engine (batch 1..32, opt 8)")
    options = {
        "cache_dir": cache,
        "precision": "fp16",
        "min_batch": 1,
        "opt_batch": 8,
        "max_batch": 32,
        "spec": spec,
    }
    trt = create_engine("tensorrt", onnx_path, **options)
    build_s = trt.timings.build_s
    log(f"{name}: built in {build_s:.1f} s ({trt.engine_path.name})")  # type: ignore[attr-defined]
    ort = create_engine("onnxruntime", onnx_path, providers=providers)
    log(f"{name}: onnxruntime on {ort.providers}")  # type: ignore[attr-defined]
    batch = inputs(8)
    output = spec.output_names[0]
    expected, got = ort.infer(batch)[output], trt.infer(batch)[output]
    if got.shape != expected.shape:
        rows.append(f"{name}: PARITY FAIL shape {got.shape} != {expected.shape}")
        ok = False
    elif spec.output_names[0] == "output0":  # detector head: boxes in pixels, scores
        tolerance = DETECTION_TOLERANCE["fp16"]
        box = float(np.abs(got[:, :4] - expected[:, :4]).max())
        score = float(np.abs(got[:, 4:] - expected[:, 4:]).max())
        passed = box <= (tolerance.max_box_px or 0) and score <= (tolerance.max_score_abs or 0)
        ok &= passed
        rows.append(
            f"{name}: parity vs onnxruntime: max box {box:.3f} px, max score {score:.4f} "
            f"{'PASS' if passed else 'FAIL'}"
        )
    else:
        cosine = float(_cosine(got, expected).min())
        passed = cosine >= 0.999
        ok &= passed
        rows.append(
            f"{name}: parity vs onnxruntime: min cosine {cosine:.6f} (>= 0.999) "
            f"{'PASS' if passed else 'FAIL'}"
        )
    for size in BATCHES:
        data = inputs(size)
        trt_s, ort_s = _time(trt, data), _time(ort, data, seconds=2.0, warmup=1, min_calls=2)
        rows.append(
            f"{name}: batch {size:>2}: TensorRT {trt_s * 1e3:8.2f} ms ({size / trt_s:8.1f}/s)   "
            f"onnxruntime {ort_s * 1e3:8.2f} ms ({size / ort_s:8.1f}/s)   {ort_s / trt_s:5.1f}x"
        )
    trt.close()
    ort.close()
    again = create_engine("tensorrt", onnx_path, **options)
    hit = again.timings.build_s == 0.0
    ok &= hit
    rows.append(
        f"{name}: second load {'cache hit' if hit else 'REBUILT (cache miss)'} "
        f"in {again.timings.load_s:.1f} s"
    )
    again.close()
    return ok, rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, help="keep the ONNX files and engine cache in this directory")
    parser.add_argument("--only", choices=("clip", "yolo"), help="check one model")
    args = parser.parse_args()
    try:
        import tensorrt

        from engines.cuda_runtime import CudaRuntime

        cuda = CudaRuntime(0)
        gpu, capability = cuda.device_facts()
        cuda.close()
    except Exception as exc:  # missing package, driver or GPU
        print(f"gpu_check: needs TensorRT and a CUDA GPU: {type(exc).__name__}: {exc}")
        return 2
    import onnxruntime

    providers = (
        ["cuda", "cpu"] if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else ["cpu"]
    )
    log(
        f"{gpu} (sm {capability}), TensorRT {tensorrt.__version__}, "
        f"onnxruntime {onnxruntime.__version__} {providers}"
    )
    work_dir = args.keep or Path(tempfile.mkdtemp(prefix="watchword-gpu-check-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    results: list[str] = []
    all_ok = True
    builders = {"clip": ("CLIP ViT-B/16 vision", _clip_onnx), "yolo": ("YOLOv8n 640", _yolo_onnx)}
    for key, (name, build) in builders.items():
        if args.only and args.only != key:
            continue
        log(f"{name}: exporting ONNX")
        path, spec, inputs = build(work_dir)
        ok, rows = check(name, path, spec, inputs, work_dir / "cache", providers)
        all_ok &= ok
        results += rows
        for row in rows:
            log(row)
    print()
    print(
        f"GPU check on {gpu} (sm {capability}), TensorRT {tensorrt.__version__}, "
        f"{time.perf_counter() - STARTED:.0f} s"
    )
    for row in results:
        print("  " + row)
    print("RESULT: " + ("PASS" if all_ok else "FAIL"))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
