"""Export an ultralytics YOLO detector to ONNX through ultralytics' exporter, validated and described.

The graph keeps ultralytics' layout (input ``images`` (B, 3, S, S) letterboxed RGB in [0, 1], output
``output0`` (B, 4 + classes, anchors)), so the ``yolo`` detector runs it with the pre- and
post-processing of :mod:`engines.yolo_processing`, which also letterboxes the frames used here for
calibration and parity. Raw head outputs are compared with the torch model's (boxes in
pixels, class scores) before the manifest is written. FP16 and INT8 go to ONNX Runtime (float16
conversion; static quantization calibrated on site frames) or to TensorRT builder flags.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines import Manifest, create_engine, write_manifest
from engines.manifest import sha256_file
from engines.torch_engine import TorchEngine
from engines.ultralytics_import import import_ultralytics, load_detection_model
from engines.yolo_processing import decode, letterbox_geometry
from engines.yolo_processing import preprocess as letterbox_batch
from export.calibration import read_frames, split_frames
from export.clip import ExportResult
from export.errors import CalibrationError, ExportError, SourceModelError
from export.onnx_graph import convert_fp16
from export.parity import ParityResult, check_parity
from export.person_gate import Attempt, quantize_detector
from export.source import library_versions
from export.specs import ExportSpec, yolo_spec

logger = logging.getLogger(__name__)

LIBRARIES = ("ultralytics", "torch", "onnx", "onnxruntime", "numpy", "tensorrt")


@dataclass
class YoloExportConfig:
    """What ``watchword export yolo`` does.

    Attributes:
        weights: an ultralytics ``.pt`` detection model.
        out: the export directory.
        imgsz: input size in pixels (square, a multiple of the model's stride).
        half: FP16 (float16 graph for ONNX Runtime, or the FP16 builder flag for TensorRT).
        int8: INT8 calibrated on ``calibration``.
        calibration: folder of images or a video (needed for INT8; real frames also join the parity check).
        engine: ``onnxruntime`` or ``tensorrt`` (also build and check an engine here).
        max_batch: the largest batch the graph (and TensorRT profile) serves.
        opset: ONNX opset, 17 or newer.
        calibration_frames: frames read from the calibration source, spread over it (None: 300 for
            INT8, a few hundred as the scales need, else 64); a quarter is held out for the checks.
        confidence: the person score the INT8 gate compares the fp32 and INT8 graphs at.
        gate_classes: ``person`` (the gate compares people) or ``all`` (boxes of every class, each
            matched only within its class: for models whose people mean nothing, random weights).
        parity_samples: fresh random inputs for the parity check (real frames come on top).
        providers: ONNX Runtime providers for the parity check.
        trt_cache_dir: TensorRT engine cache.
    """

    weights: Path
    out: Path
    imgsz: int = 640
    half: bool = False
    int8: bool = False
    calibration: Path | None = None
    engine: str = "onnxruntime"
    max_batch: int = 16
    opset: int = 17
    calibration_frames: int | None = None
    confidence: float = 0.25
    gate_classes: str = "person"
    parity_samples: int = 4
    providers: tuple[str, ...] = ("cpu",)
    trt_cache_dir: Path = Path("~/.cache/watchword/tensorrt")

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.half else "fp32"


def _check(config: YoloExportConfig) -> None:
    if config.half and config.int8:
        raise ExportError("choose one of --half and --int8")
    if config.int8 and config.calibration is None:
        raise CalibrationError("INT8 needs calibration images: pass a folder of images or a video")
    if config.gate_classes not in ("person", "all"):
        raise ExportError(f"gate_classes must be person or all, got {config.gate_classes!r}")
    if config.engine not in ("onnxruntime", "tensorrt"):
        raise ExportError(f"engine must be onnxruntime or tensorrt, got {config.engine!r}")
    if config.imgsz % 32:
        raise ExportError(f"imgsz must be a multiple of 32, got {config.imgsz}")
    if config.opset < 17:
        raise ExportError(f"opset must be 17 or newer, got {config.opset}")
    weights = Path(config.weights)
    if weights.suffix != ".pt" or not weights.is_file():
        raise SourceModelError(f"weights must be an existing ultralytics .pt file, got {weights}")


def export_yolo(config: YoloExportConfig, progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export, convert, validate and describe a YOLO detector; see the module docstring.

    Raises:
        SourceModelError: missing or non-detection weights.
        CalibrationError: INT8 without usable calibration images.
        ParityError: the graph disagrees with torch beyond its tolerance (no manifest is written).
        ExportError: any other failure.
    """
    step = progress or (lambda message: logger.info("%s", message))
    _check(config)
    started = time.perf_counter()
    import_ultralytics()
    from ultralytics import YOLO

    weights = Path(config.weights).expanduser().resolve()
    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    stem = weights.stem
    onnx_path = out / f"{stem}.onnx"
    for stale in (out / "manifest.json", out / "model.json", onnx_path, out / f"{stem}.int8.calib"):
        stale.unlink(missing_ok=True)

    step(f"loading {weights.name}")
    try:
        source = YOLO(str(weights), task="detect")
    except Exception as exc:  # ultralytics raises many types for bad files
        raise SourceModelError(f"cannot load {weights}: {type(exc).__name__}: {exc}") from exc
    if source.task != "detect":
        raise SourceModelError(f"{weights.name} is a {source.task} model; the detector needs a detect model")
    names = {int(k): str(v) for k, v in dict(source.names).items()}

    step(f"exporting to ONNX with ultralytics (opset {config.opset}, {config.imgsz} px, dynamic batch)")
    with tempfile.TemporaryDirectory(prefix="watchword-yolo-") as work:
        copy = Path(work) / weights.name
        shutil.copyfile(weights, copy)
        try:
            exported = YOLO(str(copy), task="detect").export(
                format="onnx",
                imgsz=config.imgsz,
                dynamic=True,
                simplify=False,
                opset=config.opset,
                nms=False,
                device="cpu",
                batch=1,
                verbose=False,
            )
        except Exception as exc:  # the exporter's failures are untyped
            raise ExportError(
                f"ultralytics could not export {weights.name} to ONNX: {type(exc).__name__}: {exc}"
            ) from exc
        shutil.move(str(exported), onnx_path)

    import torch

    head, _, stride = load_detection_model(str(weights))  # the module the `yolo` detector runs for .pt
    with torch.inference_mode():
        shape = tuple(head(torch.zeros(1, 3, config.imgsz, config.imgsz)).shape)
    spec = yolo_spec(config.imgsz, shape[1], shape[2], config.max_batch)
    reference = TorchEngine.from_module(head, spec.engine_spec)

    frames: list[np.ndarray] = []
    parity_frames: list[np.ndarray] = []
    extra: dict[str, Any] = {}
    if config.calibration is not None:
        step(f"reading frames from {config.calibration}")
        count = config.calibration_frames or (300 if config.int8 else 64)
        frames, parity_frames = split_frames(read_frames(config.calibration, count))
        extra["calibration"] = {
            "source": str(config.calibration),
            "frames": len(frames),
            "parity_frames": len(parity_frames),
        }

    def preprocess(images: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {"images": letterbox_batch(images, config.imgsz)[0]}

    size = min(4, config.max_batch)
    rng = np.random.default_rng(20240601)
    batches = [spec.dummy_inputs(size, rng) for _ in range(-(-config.parity_samples // size))]
    batches += [preprocess(parity_frames[i : i + size]) for i in range(0, len(parity_frames), size)]

    precision = config.precision
    graph: dict[str, Any] = {"file": onnx_path.name, "precision": "fp32", **spec.engine_spec.to_dict()}
    if config.engine == "onnxruntime" and precision == "fp16":
        step("converting the graph to FP16")
        convert_fp16(onnx_path, onnx_path)
        graph["precision"] = "fp16"
    gate: list[ParityResult] = []
    if config.engine == "onnxruntime" and precision == "int8":
        step(
            f"quantizing to INT8 on {len(frames)} frames; gate: the fp32 graph's people on "
            f"{len(parity_frames)} held-out frames"
        )
        gated = _quantize_gated(config, onnx_path, names, frames, parity_frames, preprocess)
        extra.update(quantization=gated.quantization, int8_attempts=gated.attempts)
        gate.append(gated.parity)
        graph.update(precision="int8", quantization="onnxruntime-qdq")

    results: list[ParityResult] = []
    step(f"checking the graph against torch on ONNX Runtime ({graph['precision']})")
    with create_engine("onnxruntime", onnx_path, providers=config.providers, warmup=False) as ort:
        results.append(check_parity(spec, graph["precision"], reference, ort, batches, kind="detection"))
        # The boxes a detector reports, through the same decode and NMS the `yolo` detector runs.
        results[-1].metrics.update(decoded_box_agreement(reference, ort, batches, config.imgsz))
    results += gate
    files = [onnx_path.name, "model.json"]
    if config.engine == "tensorrt":
        results.append(
            _tensorrt_parity(config, out, spec, graph, reference, batches, frames, preprocess, step, files)
        )

    model_info = {
        "format": 1,
        "kind": "yolo",
        "imgsz": config.imgsz,
        "names": names,
        "stride": stride,
        "input": "images",
        "output": "output0",
        "layout": "boxes xywh in input pixels, then one sigmoid score per class, per anchor",
    }
    (out / "model.json").write_text(json.dumps(model_info, indent=2) + "\n", encoding="utf-8")
    manifest = Manifest(
        kind="yolo",
        source={"model": str(weights), "revision": None, "sha256": sha256_file(weights)},
        precision=precision,
        opset=_opset(onnx_path),
        graphs={"detector": graph},
        parity=[r.to_dict() for r in results],
        versions=library_versions(LIBRARIES),
        extra={**extra, "engine": config.engine, "max_batch": config.max_batch},
    )
    manifest.extra["seconds"] = round(time.perf_counter() - started, 1)
    write_manifest(out, manifest, files)
    step(f"wrote {out / 'manifest.json'}")
    return ExportResult(out, manifest, results)


def person_class(names: dict[int, str]) -> int:
    """The class id named ``person`` (COCO's 0 where the names do not say)."""
    return next((index for index, name in names.items() if name.strip().lower() == "person"), 0)


INT8_OPS = ("Conv", "Sigmoid", "Mul", "Add", "Concat", "MaxPool", "Resize", "Split")
"""Op types quantized by the first INT8 attempts: besides the convolutions, their SiLU (``Sigmoid``
times ``Mul``) and the joins between blocks, so an activation stays uint8 from one convolution to
the next (ONNX Runtime runs ``QLinearSigmoid``/``QLinearMul``/``QLinearConcat``) instead of going
back to float around every activation: YOLOv8n at 640 px runs 1.7x the fp32 graph's speed on this
CPU this way against 1.2x with the convolutions alone (``python -m bench.peers`` prints each attempt)."""

CONV_OPS = ("Conv",)
"""Op types of the fallback attempts: the convolutions alone, activations in float."""


def sensitive_layers(onnx_path: Path) -> list[Attempt]:
    """The INT8 attempts for an ultralytics graph, fastest first, each tried only if the one before
    misses the people gate:

    1. ``decode``: everything in :data:`INT8_OPS` quantized except the head's box decoding (DFL,
       anchor offsets, strides and the final join of pixel boxes with 0-1 class scores, which no
       single uint8 scale can hold) -- the convolution branches of the head are quantized;
    2. ``stem+decode``: the same with the stem (the first two modules, which see raw pixels) in fp32;
    3. ``none``: the convolutions alone (:data:`CONV_OPS`), activations in float;
    4. ``stem+head``: the convolutions alone, with the stem and the whole detection head in fp32.
    """
    import re

    import onnx

    nodes = [n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node]
    modules = {name: int(found.group(1)) for name in nodes if (found := re.match(r"/model\.(\d+)/", name))}
    if not modules:
        return [("none", [], {"ops": CONV_OPS})]
    last = max(modules.values())
    stem = [name for name, index in modules.items() if index <= 1]
    head = [name for name, index in modules.items() if index == last]
    # the head's convolution branches (cv2: boxes, cv3: classes; one2one_* in YOLOv10) vs its decoding
    branch = re.compile(rf"/model\.{last}/(?:one2one_)?cv\d")
    decoding = [name for name in head if not branch.match(name)]
    quantized, convs = {"ops": INT8_OPS}, {"ops": CONV_OPS}
    return [
        ("decode", decoding, quantized),
        ("stem+decode", stem + decoding, quantized),
        ("none", [], convs),
        ("stem+head", stem + head, convs),
    ]


def _quantize_gated(
    config: YoloExportConfig,
    onnx_path: Path,
    names: dict[int, str],
    frames: list[np.ndarray],
    held_out: list[np.ndarray],
    preprocess: Callable[[list[np.ndarray]], dict[str, np.ndarray]],
) -> Any:
    """Quantize ``onnx_path`` in place through :func:`export.person_gate.quantize_detector`."""
    if not frames or not held_out:
        raise CalibrationError(
            "INT8 needs at least 2 calibration frames (a quarter is held out for the gate)"
        )
    person = person_class(names)

    def calibration() -> Any:
        return (preprocess(frames[i : i + 8]) for i in range(0, len(frames), 8))

    def people_of(path: Path) -> list[np.ndarray]:
        boxes: list[np.ndarray] = []
        with create_engine("onnxruntime", path, providers=config.providers, warmup=False) as engine:
            for start in range(0, len(held_out), 8):
                chunk = held_out[start : start + 8]
                tensor, geometries = letterbox_batch(chunk, config.imgsz)
                output = engine.infer({"images": tensor})["output0"]
                for found in decode(output, geometries, config.confidence, 0.7):
                    if config.gate_classes == "person":
                        boxes.append(found.xyxy[found.class_id == person])
                    else:  # boxes of two classes never overlap once offset by their class
                        boxes.append(found.xyxy + (found.class_id[:, None] * 8192.0).astype(np.float32))
        return boxes

    return quantize_detector(onnx_path, onnx_path, calibration, people_of, sensitive_layers(onnx_path))


def decoded_box_agreement(
    reference: Any, candidate: Any, batches: list[dict[str, np.ndarray]], imgsz: int
) -> dict[str, float]:
    """Decode both engines' outputs with :func:`engines.yolo_processing.decode` (confidence 0.25,
    IoU 0.7, every class) and compare the boxes: counts, and the worst IoU of a box with its match."""
    geometry = letterbox_geometry(imgsz, imgsz, imgsz)
    counts, worst = [0, 0], 1.0
    for batch in batches:
        outputs = [engine.infer(batch)["output0"] for engine in (reference, candidate)]
        geometries = [geometry] * len(outputs[0])
        ref, cand = (decode(output, geometries, 0.25, 0.7) for output in outputs)
        for a, b in zip(ref, cand, strict=True):
            counts[0] += len(a.confidence)
            counts[1] += len(b.confidence)
            for box in a.xyxy:
                if not len(b.xyxy):
                    worst = 0.0
                    continue
                inter_w = np.clip(
                    np.minimum(box[2], b.xyxy[:, 2]) - np.maximum(box[0], b.xyxy[:, 0]), 0, None
                )
                inter_h = np.clip(
                    np.minimum(box[3], b.xyxy[:, 3]) - np.maximum(box[1], b.xyxy[:, 1]), 0, None
                )
                inter = inter_w * inter_h
                areas = (box[2] - box[0]) * (box[3] - box[1]) + np.prod(b.xyxy[:, 2:] - b.xyxy[:, :2], axis=1)
                worst = min(worst, float((inter / np.maximum(areas - inter, 1e-9)).max()))
    return {
        "decoded_boxes_reference": float(counts[0]),
        "decoded_boxes": float(counts[1]),
        "decoded_min_iou": worst,
    }


def _opset(path: Path) -> int:
    import onnx

    from export.onnx_graph import opset_of

    return opset_of(onnx.load(str(path), load_external_data=False))


def _tensorrt_parity(
    config: YoloExportConfig,
    out: Path,
    spec: ExportSpec,
    graph: dict[str, Any],
    reference: Any,
    batches: list[dict[str, np.ndarray]],
    frames: list[np.ndarray],
    preprocess: Callable[[list[np.ndarray]], dict[str, np.ndarray]],
    step: Callable[[str], None],
    files: list[str],
) -> ParityResult:
    """Build a TensorRT engine on this machine (into the cache) and check it against torch."""
    precision = config.precision
    opt_batch = min(4, config.max_batch)
    calibration_cache = out / f"{Path(graph['file']).stem}.int8.calib" if precision == "int8" else None
    calibration_batches = None
    if precision == "int8":
        usable = len(frames) - len(frames) % opt_batch
        if usable == 0:
            raise CalibrationError(f"INT8 calibration needs at least {opt_batch} frames, got {len(frames)}")
        calibration_batches = (preprocess(frames[i : i + opt_batch]) for i in range(0, usable, opt_batch))
    step(f"building and checking a TensorRT {precision} engine")
    with create_engine(
        "tensorrt",
        out / graph["file"],
        cache_dir=Path(config.trt_cache_dir).expanduser(),
        precision=precision,
        min_batch=1,
        opt_batch=opt_batch,
        max_batch=config.max_batch,
        spec=spec.engine_spec,
        calibration_cache=calibration_cache,
        calibration_batches=calibration_batches,
    ) as engine:
        result = check_parity(spec, precision, reference, engine, batches, kind="detection")
        target = getattr(engine, "target", None)
        graph["tensorrt"] = {
            "precision": precision,
            "engine": getattr(getattr(engine, "engine_path", None), "name", None),
            "tensorrt_version": getattr(target, "tensorrt_version", None),
            "gpu": getattr(target, "gpu_name", None),
            "compute_capability": getattr(target, "compute_capability", None),
            "build_s": round(engine.timings.build_s, 1),
        }
    if calibration_cache is not None and calibration_cache.is_file():
        graph["calibration_cache"] = calibration_cache.name
        files.append(calibration_cache.name)
    return result
