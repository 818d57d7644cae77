"""The CLIP encoder at the edge: exported image and text graphs behind any engine, no torch, no transformers.

An export directory (``watchword export clip``) holds the two graphs, ``tokenizer.json``,
``preprocess.json`` (the image processor's constants), ``model.json`` (logit scale, embedding size,
text settings) and ``manifest.json``. :meth:`ClipEncoder.load` verifies every file against the
manifest before it opens anything, then loads each graph with the configured engine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.embedding.config import (
    EmbedderConfig,
    EngineConfig,
    OnnxRuntimeEngineConfig,
    TensorRTEngineConfig,
    TorchEngineConfig,
)
from agent.embedding.preprocess import PREPROCESS_FILE, ImagePreprocessing, crop_box
from agent.embedding.tokenizer import TextSettings, TextTokenizer
from engines import Engine, EngineSpec, Manifest, create_engine, manifest_digest, verify_manifest
from engines.fallback import open_engine

logger = logging.getLogger(__name__)

MODEL_FILE = "model.json"
TOKENIZER_FILE = "tokenizer.json"


class EncoderError(RuntimeError):
    """An export directory the encoder cannot use (missing parts, unsupported engine for its graphs)."""


@dataclass(frozen=True)
class ModelInfo:
    """The contents of ``model.json``.

    Attributes:
        kind: ``"clip"`` or ``"siglip"``.
        embed_dim: embedding size.
        logit_scale: multiplier of cosine similarities into logits (``exp`` of the learned scale).
        logit_bias: added to the logits (SigLIP), or None.
        image_input, image_output: tensor names of the vision graph.
        text_output: output name of the text graph.
        text: tokenization settings of the text graph.
    """

    kind: str
    embed_dim: int
    logit_scale: float
    logit_bias: float | None
    image_input: str
    image_output: str
    text_output: str
    text: TextSettings

    @classmethod
    def from_file(cls, path: Path) -> ModelInfo:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                kind=str(data["kind"]),
                embed_dim=int(data["embed_dim"]),
                logit_scale=float(data["logit_scale"]),
                logit_bias=None if data.get("logit_bias") is None else float(data["logit_bias"]),
                image_input=str(data["image"]["input"]),
                image_output=str(data["image"]["output"]),
                text_output=str(data["text"]["output"]),
                text=TextSettings.from_dict(data["text"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EncoderError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def _l2_normalise(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float32, copy=False)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, np.float32(1e-12))


def _engine_config(engine: EngineConfig | str, providers: Sequence[str] | None) -> EngineConfig:
    if not isinstance(engine, str):
        return engine
    if engine == "onnxruntime":
        return OnnxRuntimeEngineConfig(
            type="onnxruntime", **({"providers": list(providers)} if providers else {})
        )
    if engine == "tensorrt":
        return TensorRTEngineConfig(type="tensorrt")
    if engine == "torch":
        return TorchEngineConfig(type="torch")
    raise EncoderError(f"unknown engine {engine!r}; choose onnxruntime, tensorrt or torch")


class ClipEncoder:
    """Embeds person crops, whole images and texts with an exported CLIP (or SigLIP) model.

    Use :meth:`load` or :meth:`from_config`. Embeddings are float32 rows of unit L2 norm.

    Attributes:
        model_dir: the export directory.
        manifest: its verified manifest.
        manifest_hash: sha256 of ``manifest.json``, identifying the export (and all its file hashes).
        info: the model's ``model.json``.
        preprocessing: the image preprocessing (identical to the model's processor).
        tokenizer: the text tokenizer.
        batch_size: the most crops or texts per inference call.
        crop_padding: default margin around boxes, as a fraction of the box's size.
        square_crops: default squaring of crops.
    """

    def __init__(
        self,
        model_dir: Path,
        manifest: Manifest,
        info: ModelInfo,
        preprocessing: ImagePreprocessing,
        tokenizer: TextTokenizer,
        image_engine: Engine,
        text_engine: Engine,
        *,
        batch_size: int = 16,
        crop_padding: float = 0.1,
        square_crops: bool = True,
    ) -> None:
        self.model_dir = model_dir
        self.manifest = manifest
        self.manifest_hash = manifest_digest(model_dir)
        self.info = info
        self.preprocessing = preprocessing
        self.tokenizer = tokenizer
        self.image_engine = image_engine
        self.text_engine = text_engine
        self.batch_size = min(batch_size, getattr(image_engine, "max_batch", batch_size))
        self.crop_padding = crop_padding
        self.square_crops = square_crops

    @classmethod
    def from_config(cls, config: EmbedderConfig) -> ClipEncoder:
        """Load the encoder an :class:`EmbedderConfig` describes."""
        return cls.load(
            config.model_dir.expanduser(),
            config.engine,
            batch_size=config.batch_size,
            crop_padding=config.crop_padding,
            square_crops=config.square_crops,
            verify_hashes=config.verify_hashes,
        )

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        engine: EngineConfig | str = "onnxruntime",
        *,
        providers: Sequence[str] | None = None,
        batch_size: int = 16,
        crop_padding: float = 0.1,
        square_crops: bool = True,
        verify_hashes: bool = True,
    ) -> ClipEncoder:
        """Verify an export directory against its manifest and load both graphs.

        Args:
            model_dir: the directory ``watchword export clip`` wrote.
            engine: an engine config, or ``"onnxruntime"``, ``"tensorrt"``, ``"torch"`` with defaults.
            providers: onnxruntime providers in fallback order (with ``engine="onnxruntime"``).
            batch_size: the most crops or texts per inference call.
            crop_padding: default margin around boxes, as a fraction of the box's size.
            square_crops: default squaring of crops.
            verify_hashes: hash every file (False checks presence and sizes only).

        Raises:
            engines.ManifestError: a missing manifest, or missing or modified files.
            EncoderError: an export this encoder cannot use.
            engines.EngineError: a graph that does not load (corrupt file, missing runtime or GPU).
        """
        directory = Path(model_dir).expanduser()
        manifest = verify_manifest(directory, check_hashes=verify_hashes)
        if manifest.kind not in ("clip", "siglip"):
            raise EncoderError(f"{directory} holds a {manifest.kind} export, not a CLIP or SigLIP encoder")
        for name in (MODEL_FILE, PREPROCESS_FILE, TOKENIZER_FILE):
            if name not in manifest.files:
                raise EncoderError(f"{directory}: the manifest does not list {name}; export again")
        info = ModelInfo.from_file(directory / MODEL_FILE)
        preprocessing = ImagePreprocessing.from_file(directory / PREPROCESS_FILE)
        tokenizer = TextTokenizer(directory / TOKENIZER_FILE, info.text)
        config = _engine_config(engine, providers)
        image_engine = _load_graph(directory, manifest, "vision", config)
        try:
            text_engine = _load_graph(directory, manifest, "text", config)
        except Exception:
            image_engine.close()
            raise
        logger.info(
            "CLIP encoder %s: %s, embeddings of %d, manifest %s, engines %s / %s",
            directory,
            manifest.precision,
            info.embed_dim,
            manifest_digest(directory)[:12],
            image_engine.name,
            text_engine.name,
        )
        return cls(
            directory,
            manifest,
            info,
            preprocessing,
            tokenizer,
            image_engine,
            text_engine,
            batch_size=batch_size,
            crop_padding=crop_padding,
            square_crops=square_crops,
        )

    @property
    def logit_scale(self) -> float:
        """Multiplier from cosine similarity to the model's logits."""
        return self.info.logit_scale

    @property
    def embed_dim(self) -> int:
        return self.info.embed_dim

    def embed_images(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Embed whole BGR uint8 images.

        Returns:
            (N, D) float32, L2-normalised.
        """
        return self._embed_rgb([cv2.cvtColor(np.asarray(image), cv2.COLOR_BGR2RGB) for image in images_bgr])

    def embed_crops(
        self,
        frame_bgr: np.ndarray,
        boxes_xyxy: np.ndarray | Sequence[Sequence[float]],
        padding: float | None = None,
        square: bool | None = None,
    ) -> np.ndarray:
        """Embed the regions of ``frame_bgr`` around each box.

        Args:
            frame_bgr: HxWx3 uint8 frame.
            boxes_xyxy: (N, 4) boxes as x1, y1, x2, y2 in the frame's pixels.
            padding: margin around each box as a fraction of its size (default: :attr:`crop_padding`).
            square: square each crop (default: :attr:`square_crops`).

        Returns:
            (N, D) float32, L2-normalised; (0, D) for no boxes.
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        pad = self.crop_padding if padding is None else padding
        squared = self.square_crops if square is None else square
        fill = self.preprocessing.fill_rgb
        crops = [crop_box(frame_bgr, box.tolist(), pad, squared, fill) for box in boxes]
        return self._embed_rgb(crops)

    def embed_regions(
        self,
        regions: Sequence[tuple[np.ndarray, Sequence[float]]],
        padding: float | None = None,
        square: bool | None = None,
    ) -> np.ndarray:
        """Embed boxes from several frames (several cameras) in shared batches.

        Args:
            regions: (BGR frame, x1 y1 x2 y2 box in that frame's pixels) pairs.
            padding: margin around each box as a fraction of its size (default: :attr:`crop_padding`).
            square: square each crop (default: :attr:`square_crops`).

        Returns:
            (N, D) float32, L2-normalised, in the order of ``regions``.
        """
        pad = self.crop_padding if padding is None else padding
        squared = self.square_crops if square is None else square
        fill = self.preprocessing.fill_rgb
        crops = [crop_box(frame, [float(v) for v in box], pad, squared, fill) for frame, box in regions]
        return self._embed_rgb(crops)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts.

        Returns:
            (N, D) float32, L2-normalised; (0, D) for no texts.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        names = set(self.text_engine.spec.input_names)
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start : start + self.batch_size])
            inputs = {name: value for name, value in tokens.items() if name in names}
            chunks.append(self.text_engine.infer(inputs)[self.info.text_output])
        return _l2_normalise(np.concatenate(chunks))

    def logits(self, image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
        """The model's image-text logits: ``logit_scale * cosine (+ logit_bias)``, shape (images, texts)."""
        logits = self.logit_scale * (image_embeddings @ text_embeddings.T)
        return logits + self.info.logit_bias if self.info.logit_bias is not None else logits

    def health(self) -> dict[str, Any]:
        """Both engines' state; ``degraded`` with the reason when either runs off its configured device."""
        engines = [self.image_engine.health(), self.text_engine.health()]
        reasons = [e["reason"] for e in engines if e["reason"]]
        return {
            "status": "degraded" if reasons else "ok",
            "reason": "; ".join(dict.fromkeys(reasons)) or None,
            "engines": engines,
        }

    def close(self) -> None:
        """Release both engines."""
        self.image_engine.close()
        self.text_engine.close()

    def __enter__(self) -> ClipEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _embed_rgb(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        if not images_rgb:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        chunks = []
        for start in range(0, len(images_rgb), self.batch_size):
            pixels = self.preprocessing(images_rgb[start : start + self.batch_size])
            chunks.append(self.image_engine.infer({self.info.image_input: pixels})[self.info.image_output])
        return _l2_normalise(np.concatenate(chunks))


ORT_QUANTIZATIONS = ("onnxruntime-qdq", "onnxruntime-dynamic")


def _load_graph(directory: Path, manifest: Manifest, graph: str, config: EngineConfig) -> Engine:
    entry = manifest.graphs.get(graph)
    if entry is None:
        raise EncoderError(f"{directory}: the manifest has no {graph!r} graph")
    spec = EngineSpec.from_dict(entry) if "inputs" in entry else None
    options: dict[str, Any] = config.engine_options()
    if isinstance(config, TorchEngineConfig):
        program = entry.get("torch_program")
        if not program:
            raise EncoderError(
                f"{directory}: no torch program for the {graph} graph; export with --torch-programs to use "
                "the torch engine"
            )
        return create_engine("torch", directory / str(program), **options)
    path = directory / manifest.graph_file(graph)
    if isinstance(config, TensorRTEngineConfig):
        if entry.get("precision") == "int8" and entry.get("quantization") in ORT_QUANTIZATIONS:
            raise EncoderError(
                f"{directory}: the {graph} graph was quantized for ONNX Runtime; for TensorRT INT8 "
                "export the fp32 graph with --engine tensorrt --precision int8"
            )
        precision = config.precision
        calibration = entry.get("calibration_cache")
        if precision == "int8" and not calibration:
            precision = "fp16"  # graphs exported without INT8 scales (the text encoder) build in FP16
            logger.info("%s graph has no INT8 calibration cache; building it in FP16", graph)
        options.update(
            precision=precision,
            spec=spec,
            calibration_cache=directory / str(calibration) if calibration else None,
        )
        return open_engine("tensorrt", path, options, allow_cpu_fallback=config.allow_cpu_fallback)
    return create_engine("onnxruntime", path, **options)
