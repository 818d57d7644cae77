"""Export a ``transformers`` CLIP (or SigLIP) model for the edge: two ONNX graphs and everything around them.

The image and text encoders become two graphs (dynamic batch) that output L2-normalised embeddings.
Next to them go ``tokenizer.json``, ``preprocess.json`` (the image processor's constants),
``model.json`` (logit scale, embedding size, text settings) and, last and only if every parity check
passed, ``manifest.json`` with the sha256 of every file. FP16 and INT8 are made for ONNX Runtime
(float16 conversion; static quantization of the image encoder calibrated on site footage), or for
TensorRT (builder flags, INT8 calibrator and calibration cache) with ``engine="tensorrt"``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines import Manifest, create_engine, write_manifest
from engines.torch_engine import TorchEngine
from export.calibration import person_crops, read_frames, split_frames
from export.errors import CalibrationError, ExportError, SourceModelError
from export.onnx_graph import convert_fp16, torch_to_onnx
from export.parity import ParityResult, check_parity
from export.quantize import quantize_int8, quantize_int8_dynamic
from export.source import library_versions, resolve_hf_model
from export.specs import PRECISIONS, ExportSpec, clip_text_spec, clip_vision_spec

logger = logging.getLogger(__name__)

PROMPTS = (
    "a person falling down",
    "someone being hit by a car door",
    "a man running across the street",
    "a woman walking with a bag",
    "two people fighting",
    "a child riding a bicycle",
    "a person lying on the ground",
    "an old man with a walking stick",
    "a person climbing over a fence",
    "people standing and talking",
)
LIBRARIES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "numpy", "tensorrt")
INT8_MODES = ("static", "dynamic")
OUTPUT_FILES = ("vision.onnx", "text.onnx", "model.json", "preprocess.json", "tokenizer.json")


@dataclass
class ClipExportConfig:
    """What ``watchword export clip`` does.

    Attributes:
        model: a model directory or hub id (never downloaded here).
        out: the export directory.
        precision: ``fp32``, ``fp16`` or ``int8``.
        int8_mode: for ``int8`` on ONNX Runtime: ``static`` (QDQ, activation scales calibrated on
            ``calibration``) or ``dynamic`` (int8 MatMul weights, activations quantized per batch at
            run time: no calibration needed, and the faster of the two on a CPU with AVX-512 VNNI,
            see ``python -m bench.embed``). Either is kept only if the parity check passes.
        calibration: folder of images or a video, for INT8 scales and real-image parity inputs.
        engine: ``onnxruntime`` (graphs for ONNX Runtime) or ``tensorrt`` (also build and check engines here).
        max_batch: the largest batch the graphs (and TensorRT profiles) serve.
        opset: ONNX opset, 17 or newer.
        calibration_frames: frames read from the calibration source.
        calibration_crops: crops used to calibrate INT8.
        parity_samples: fresh random inputs per graph for the parity check (real crops come on top).
        torch_programs: also save ``torch.export`` programs, for the torch engine.
        providers: ONNX Runtime providers for the parity checks.
        trt_cache_dir: TensorRT engine cache (``engine="tensorrt"``).
        models_dir: where ``watchword models pull`` stores models.
    """

    model: str
    out: Path
    precision: str = "fp32"
    int8_mode: str = "static"
    calibration: Path | None = None
    engine: str = "onnxruntime"
    max_batch: int = 32
    opset: int = 17
    calibration_frames: int = 64
    calibration_crops: int = 256
    parity_samples: int = 16
    torch_programs: bool = False
    providers: tuple[str, ...] = ("cpu",)
    trt_cache_dir: Path = Path("~/.cache/watchword/tensorrt")
    models_dir: Path = Path("models")


@dataclass
class ExportResult:
    """A finished export: its directory, manifest and the parity checks that passed."""

    out: Path
    manifest: Manifest
    parity: list[ParityResult] = field(default_factory=list)


class VisionEncoder:
    """``pixel_values -> normalised image embeddings`` around a CLIP/SigLIP model (built lazily: torch)."""

    @staticmethod
    def build(model: Any) -> Any:
        import torch

        class _Vision(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
                out = self.model.get_image_features(pixel_values=pixel_values)
                return _normalise(out if isinstance(out, torch.Tensor) else out.pooler_output)

        return _Vision().eval()


class TextEncoder:
    """``input_ids[, attention_mask] -> normalised text embeddings`` (built lazily: torch)."""

    @staticmethod
    def build(model: Any, with_attention_mask: bool) -> Any:
        import torch

        class _TextWithMask(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
                return _normalise(out if isinstance(out, torch.Tensor) else out.pooler_output)

        class _Text(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
                out = self.model.get_text_features(input_ids=input_ids)
                return _normalise(out if isinstance(out, torch.Tensor) else out.pooler_output)

        return (_TextWithMask() if with_attention_mask else _Text()).eval()


def _normalise(embeddings: Any) -> Any:
    # x / sqrt(sum(x^2)) with Mul/ReduceSum/Sqrt: unlike F.normalize's ReduceL2, these convert to opset 17.
    return embeddings * (embeddings * embeddings).sum(dim=-1, keepdim=True).clamp_min(1e-24).rsqrt()


@dataclass
class _Loaded:
    kind: str
    model: Any
    processor: Any
    tokenizer: Any
    resize_backend: str
    image_size: int
    context_length: int
    embed_dim: int
    with_mask: bool
    logit_scale: float
    logit_bias: float | None
    source: dict[str, Any]


def _load(config: ClipExportConfig) -> _Loaded:
    path, source = resolve_hf_model(config.model, "clip", config.models_dir)
    try:
        import torch
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer
    except ImportError as exc:
        raise SourceModelError(
            f"exporting CLIP needs torch and transformers: pip install 'watchword[export]' ({exc})"
        ) from exc
    try:
        hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
        kind = hf_config.model_type
        if kind not in ("clip", "siglip"):
            raise SourceModelError(
                f"{config.model} is a {kind!r} model; the CLIP exporter takes clip or siglip"
            )
        model = AutoModel.from_pretrained(path, local_files_only=True).float().eval()
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise SourceModelError(f"cannot load {config.model} from {path}: {exc}") from exc
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise SourceModelError(
            f"{config.model} has no fast (tokenizers) tokenizer; the edge needs tokenizer.json"
        )
    backend = getattr(processor, "backend", None) or (
        "torchvision" if type(processor).__name__.endswith("Fast") else "pil"
    )
    settings = processor.to_dict()
    crop = settings.get("crop_size") if settings.get("do_center_crop") else None
    size = settings.get("size") or {}
    image_size = int((crop or {}).get("height") or size.get("height") or size.get("shortest_edge") or 0)
    if image_size != int(hf_config.vision_config.image_size):
        raise SourceModelError(
            f"the processor makes {image_size} px images but the vision model takes "
            f"{hf_config.vision_config.image_size} px"
        )
    with torch.inference_mode():
        dummy = torch.zeros(1, 3, image_size, image_size)
        embed_dim = int(VisionEncoder.build(model)(dummy).shape[-1])
    bias = getattr(model, "logit_bias", None)
    return _Loaded(
        kind=kind,
        model=model,
        processor=processor,
        tokenizer=tokenizer,
        resize_backend=str(backend),
        image_size=image_size,
        context_length=int(hf_config.text_config.max_position_embeddings),
        embed_dim=embed_dim,
        with_mask=kind == "clip",
        logit_scale=float(model.logit_scale.detach().exp()),
        logit_bias=None if bias is None else float(bias.detach().reshape(-1)[0]),
        source=source,
    )


def _check_config(config: ClipExportConfig) -> None:
    if config.precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
    if config.engine not in ("onnxruntime", "tensorrt"):
        raise ExportError(f"engine must be onnxruntime or tensorrt, got {config.engine!r}")
    if config.int8_mode not in INT8_MODES:
        raise ExportError(f"int8_mode must be one of {INT8_MODES}, got {config.int8_mode!r}")
    static = config.int8_mode == "static" or config.engine == "tensorrt"
    if config.precision == "int8" and static and config.calibration is None:
        raise CalibrationError("INT8 needs calibration images: pass a folder of images or a video")
    if not 1 <= config.max_batch <= 1024:
        raise ExportError(f"max_batch must be 1..1024, got {config.max_batch}")


def _clean(out: Path) -> None:
    """Remove what an earlier export left, so nothing stale is listed or loaded."""
    stale = [out / "manifest.json", *(out / name for name in OUTPUT_FILES)]
    stale += [*out.glob("*.onnx.data"), *out.glob("*.pt2"), *out.glob("*.calib")]
    for path in stale:
        path.unlink(missing_ok=True)


def export_clip(config: ClipExportConfig, progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export, convert, validate and describe a CLIP/SigLIP model; see the module docstring.

    Raises:
        SourceModelError: the model is not available locally or not a CLIP/SigLIP model.
        CalibrationError: INT8 without usable calibration images.
        ParityError: an exported graph disagrees with torch beyond its tolerance (no manifest is written).
        ExportError: any other failure.
    """
    step = progress or (lambda message: logger.info("%s", message))
    _check_config(config)
    started = time.perf_counter()
    step(f"loading {config.model}")
    loaded = _load(config)
    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    tokenizer = loaded.tokenizer
    vision_spec = clip_vision_spec(loaded.image_size, loaded.embed_dim, config.max_batch)
    text_spec = clip_text_spec(
        loaded.context_length,
        loaded.embed_dim,
        len(tokenizer),
        tokenizer.bos_token_id if loaded.kind == "clip" else None,
        int(tokenizer.eos_token_id),
        int(tokenizer.pad_token_id),
        with_attention_mask=loaded.with_mask,
        max_batch=config.max_batch,
    )
    vision = VisionEncoder.build(loaded.model)
    text = TextEncoder.build(loaded.model, loaded.with_mask)
    files: list[str] = list(OUTPUT_FILES)
    graphs: dict[str, dict[str, Any]] = {}
    opsets = []
    for spec, module in ((vision_spec, vision), (text_spec, text)):
        step(f"exporting the {spec.graph} graph to ONNX (opset {config.opset})")
        program = out / f"{spec.graph}.pt2" if config.torch_programs else None
        info = torch_to_onnx(
            module, spec, out / f"{spec.graph}.onnx", opset=config.opset, program_path=program
        )
        opsets.append(info["opset"])
        graphs[spec.graph] = {"file": f"{spec.graph}.onnx", "precision": "fp32", **spec.engine_spec.to_dict()}
        if program is not None:
            graphs[spec.graph]["torch_program"] = program.name
            files.append(program.name)
        if info["external_data"]:
            files.extend(p.name for p in out.glob(f"{spec.graph}.onnx*.data"))

    def preprocess(images_bgr: list[np.ndarray]) -> dict[str, np.ndarray]:
        rgb = [np.ascontiguousarray(image[:, :, ::-1]) for image in images_bgr]
        pixels = loaded.processor(images=rgb, return_tensors="np")["pixel_values"]
        return {"pixel_values": np.asarray(pixels, dtype=np.float32)}

    calibration_crops: list[np.ndarray] = []
    parity_crops: list[np.ndarray] = []
    extra: dict[str, Any] = {}
    if config.calibration is not None:
        step(f"reading calibration frames from {config.calibration}")
        frames = read_frames(config.calibration, config.calibration_frames)
        calibration_frames, parity_frames = split_frames(frames)
        rng = np.random.default_rng(7)
        calibration_crops = (
            person_crops(calibration_frames, config.calibration_crops, rng) + calibration_frames
        )
        parity_crops = person_crops(parity_frames, config.parity_samples, rng) if parity_frames else []
        extra["calibration"] = {
            "source": str(config.calibration),
            "frames": len(calibration_frames),
            "crops": len(calibration_crops),
            "parity_frames": len(parity_frames),
        }

    # Fresh parity inputs: a seed no tracing or calibration used, real crops of frames kept out of the
    # calibration, and real prompts; in batches the engines' profiles accept.
    rng = np.random.default_rng(20240601)
    size = min(8, config.max_batch)
    vision_batches = [vision_spec.dummy_inputs(size, rng) for _ in range(-(-config.parity_samples // size))]
    vision_batches += list(_chunks(parity_crops, size, preprocess))
    prompt_tokens = tokenizer(
        list(PROMPTS),
        padding="max_length",
        truncation=True,
        max_length=loaded.context_length,
        return_tensors="np",
    )
    prompts = {name: np.asarray(prompt_tokens[name], dtype=np.int64) for name in text_spec.input_names}
    text_batches = [
        {name: value[i : i + size] for name, value in prompts.items()} for i in range(0, len(PROMPTS), size)
    ]
    text_batches += [text_spec.dummy_inputs(size, rng) for _ in range(-(-config.parity_samples // size))]

    precision = config.precision
    onnx_precision = {"vision": "fp32", "text": "fp32"}
    if config.engine == "onnxruntime" and precision == "fp16":
        for graph in ("vision", "text"):
            step(f"converting the {graph} graph to FP16")
            convert_fp16(out / f"{graph}.onnx", out / f"{graph}.onnx")
            onnx_precision[graph] = "fp16"
    if config.engine == "onnxruntime" and precision == "int8" and config.int8_mode == "dynamic":
        step("quantizing the vision graph's MatMuls to dynamic INT8")
        report = quantize_int8_dynamic(out / "vision.onnx", out / "vision.onnx")
        onnx_precision["vision"] = "int8"
        graphs["vision"]["quantization"] = report["format"]
        extra["quantization"] = report
    elif config.engine == "onnxruntime" and precision == "int8":
        step(f"quantizing the vision graph to INT8 on {len(calibration_crops)} crops")
        report = quantize_int8(
            out / "vision.onnx",
            out / "vision.onnx",
            _chunks(calibration_crops, 16, preprocess),
            method="minmax",
        )
        onnx_precision["vision"] = "int8"
        graphs["vision"]["quantization"] = report["format"]
        extra["quantization"] = report
    for graph in ("vision", "text"):
        graphs[graph]["precision"] = onnx_precision[graph]

    results: list[ParityResult] = []
    references = {
        "vision": TorchEngine.from_module(vision, vision_spec.engine_spec),
        "text": TorchEngine.from_module(text, text_spec.engine_spec),
    }
    for spec, batches in ((vision_spec, vision_batches), (text_spec, text_batches)):
        step(f"checking the {spec.graph} graph against torch on ONNX Runtime ({onnx_precision[spec.graph]})")
        with create_engine(
            "onnxruntime", out / f"{spec.graph}.onnx", providers=config.providers, warmup=False
        ) as ort:
            results.append(
                check_parity(spec, onnx_precision[spec.graph], references[spec.graph], ort, batches)
            )

    if config.engine == "tensorrt":
        results += _tensorrt_parity(
            config,
            out,
            graphs,
            (vision_spec, text_spec),
            references,
            {"vision": vision_batches, "text": text_batches},
            calibration_crops,
            preprocess,
            step,
            files,
        )

    step("writing tokenizer, preprocessing constants and model description")
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    settings = loaded.processor.to_dict()
    from_processor = _preprocess_constants(settings, loaded.resize_backend)
    (out / "preprocess.json").write_text(json.dumps(from_processor, indent=2) + "\n", encoding="utf-8")
    model_info = {
        "format": 1,
        "kind": loaded.kind,
        "embed_dim": loaded.embed_dim,
        "logit_scale": loaded.logit_scale,
        "logit_bias": loaded.logit_bias,
        "image": {
            "graph": "vision",
            "input": "pixel_values",
            "output": "image_embeds",
            "size": loaded.image_size,
        },
        "text": {
            "graph": "text",
            "inputs": text_spec.input_names,
            "output": "text_embeds",
            "context_length": loaded.context_length,
            "pad_token_id": int(tokenizer.pad_token_id),
            "pad_token": str(tokenizer.pad_token),
        },
    }
    (out / "model.json").write_text(json.dumps(model_info, indent=2) + "\n", encoding="utf-8")
    manifest = Manifest(
        kind=loaded.kind,
        source=loaded.source,
        precision=precision,
        opset=min(opsets),
        graphs=graphs,
        parity=[r.to_dict() for r in results],
        versions=library_versions(LIBRARIES),
        extra={**extra, "engine": config.engine, "max_batch": config.max_batch, "seconds": 0.0},
    )
    manifest.extra["seconds"] = round(time.perf_counter() - started, 1)
    write_manifest(out, manifest, files)
    step(f"wrote {out / 'manifest.json'}")
    return ExportResult(out, manifest, results)


def _preprocess_constants(settings: dict[str, Any], resize_backend: str) -> dict[str, Any]:
    """The image processor's constants in the edge's format (see agent.embedding.preprocess)."""
    size = dict(settings.get("size") or {})
    crop = dict(settings.get("crop_size") or {}) if settings.get("do_center_crop") else {}
    resample = int(settings.get("resample", 3))
    if resample not in (2, 3):
        raise ExportError(
            f"the image processor resamples with filter {resample}; the edge reproduces 2 and 3 only"
        )
    if settings.get("do_pad") or size.get("longest_edge"):
        raise ExportError(f"the image processor's size {size} or padding is not reproduced at the edge")
    return {
        "shortest_edge": size.get("shortest_edge"),
        "height": size.get("height"),
        "width": size.get("width"),
        "resample": {2: "bilinear", 3: "bicubic"}[resample],
        "resize_backend": resize_backend,
        "crop_height": crop.get("height"),
        "crop_width": crop.get("width"),
        "rescale_factor": float(settings["rescale_factor"]) if settings.get("do_rescale", True) else None,
        "mean": list(settings["image_mean"]) if settings.get("do_normalize", True) else None,
        "std": list(settings["image_std"]) if settings.get("do_normalize", True) else None,
        "do_resize": bool(settings.get("do_resize", True)),
        "processor": settings.get("image_processor_type"),
    }


def _chunks(
    images: list[np.ndarray],
    size: int,
    preprocess: Callable[[list[np.ndarray]], dict[str, np.ndarray]],
    exact: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(images), size):
        chunk = images[start : start + size]
        if exact and len(chunk) < size:
            return
        yield preprocess(chunk)


def _tensorrt_parity(
    config: ClipExportConfig,
    out: Path,
    graphs: dict[str, dict[str, Any]],
    specs: tuple[ExportSpec, ExportSpec],
    references: dict[str, Any],
    batches: dict[str, list[dict[str, np.ndarray]]],
    calibration_crops: list[np.ndarray],
    preprocess: Callable[[list[np.ndarray]], dict[str, np.ndarray]],
    step: Callable[[str], None],
    files: list[str],
) -> list[ParityResult]:
    """Build TensorRT engines on this machine (into the cache) and check them against torch."""
    results = []
    opt_batch = min(8, config.max_batch)
    for spec in specs:
        precision = config.precision
        calibration_cache = None
        calibration_batches = None
        if precision == "int8":
            if spec.graph != "vision":
                precision = "fp16"  # the text encoder has no INT8 calibration data; FP16 is its fast path
            else:
                calibration_cache = out / "vision.int8.calib"
                calibration_batches = _chunks(calibration_crops, opt_batch, preprocess, exact=True)
        step(f"building and checking a TensorRT {precision} engine for the {spec.graph} graph")
        with create_engine(
            "tensorrt",
            out / f"{spec.graph}.onnx",
            cache_dir=Path(config.trt_cache_dir).expanduser(),
            precision=precision,
            min_batch=1,
            opt_batch=opt_batch,
            max_batch=config.max_batch,
            spec=spec.engine_spec,
            calibration_cache=calibration_cache,
            calibration_batches=calibration_batches,
        ) as engine:
            results.append(check_parity(spec, precision, references[spec.graph], engine, batches[spec.graph]))
            target = getattr(engine, "target", None)
            graphs[spec.graph]["tensorrt"] = {
                "precision": precision,
                "engine": engine.engine_path.name if hasattr(engine, "engine_path") else None,
                "tensorrt_version": getattr(target, "tensorrt_version", None),
                "gpu": getattr(target, "gpu_name", None),
                "compute_capability": getattr(target, "compute_capability", None),
                "build_s": round(engine.timings.build_s, 1),
            }
        if calibration_cache is not None and calibration_cache.is_file():
            graphs[spec.graph]["calibration_cache"] = calibration_cache.name
            files.append(calibration_cache.name)
    return results
