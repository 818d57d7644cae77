"""Configuration of the crop embedder and of the inference engine it runs on.

The engine is chosen by ``type`` (a discriminated union): ``onnxruntime`` with providers in an explicit
fallback order, ``tensorrt`` with an engine cache, or ``torch`` (a reference fallback). Field names
match the engine constructors' options, so a config maps onto ``create_engine(type, path, **options)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.config_rules import StrictConfigModel

Provider = Literal["tensorrt", "cuda", "cpu"]


def _default_providers() -> list[Provider]:
    return ["cpu"]


class OnnxRuntimeEngineConfig(StrictConfigModel):
    """ONNX Runtime with execution providers in the listed order (logged at start).

    A listed GPU provider (``tensorrt``, ``cuda``) that this onnxruntime lacks stops the start, unless
    ``allow_cpu_fallback`` is true: then it runs on what is left and ``/health`` says ``degraded``.
    """

    type: Literal["onnxruntime"]
    providers: list[Provider] = Field(
        default_factory=_default_providers, min_length=1, description="fallback order"
    )
    device_id: int = Field(0, ge=0)
    intra_op_threads: int | None = Field(
        None, ge=1, description="CPU threads per operator; None: onnxruntime's"
    )
    trt_cache_dir: Path = Field(
        Path("~/.cache/watchword/ort-tensorrt"), description="TensorRT EP engine cache"
    )
    trt_fp16: bool = False
    allow_cpu_fallback: bool = Field(
        False, description="run degraded on the CPU when a GPU provider is missing"
    )

    @field_validator("providers")
    @classmethod
    def _unique(cls, providers: list[str]) -> list[str]:
        if len(set(providers)) != len(providers):
            raise ValueError(f"providers must not repeat: {providers}")
        return providers

    def engine_options(self) -> dict[str, Any]:
        """Keyword options of :class:`engines.onnxruntime_engine.OnnxRuntimeEngine`."""
        return {
            "providers": list(self.providers),
            "device_id": self.device_id,
            "intra_op_threads": self.intra_op_threads,
            "trt_cache_dir": self.trt_cache_dir.expanduser(),
            "trt_fp16": self.trt_fp16,
            "allow_cpu_fallback": self.allow_cpu_fallback,
        }


class TensorRTEngineConfig(StrictConfigModel):
    """TensorRT engines built on this machine from the export's ONNX files and cached."""

    type: Literal["tensorrt"]
    cache_dir: Path = Field(Path("~/.cache/watchword/tensorrt"), description="engine cache directory")
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    min_batch: int = Field(1, ge=1)
    opt_batch: int = Field(8, ge=1)
    max_batch: int = Field(32, ge=1, le=1024)
    device_id: int = Field(0, ge=0)
    workspace_mb: int = Field(2048, ge=64)
    allow_cpu_fallback: bool = Field(
        False, description="run the ONNX graph on onnxruntime's CPU, degraded, when TensorRT cannot load"
    )

    @model_validator(mode="after")
    def _batch_order(self) -> TensorRTEngineConfig:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError("need min_batch <= opt_batch <= max_batch")
        return self

    def engine_options(self) -> dict[str, Any]:
        """Keyword options of :class:`engines.tensorrt_engine.TensorRTEngine`."""
        return {
            "cache_dir": self.cache_dir.expanduser(),
            "precision": self.precision,
            "min_batch": self.min_batch,
            "opt_batch": self.opt_batch,
            "max_batch": self.max_batch,
            "device_id": self.device_id,
            "workspace_mb": self.workspace_mb,
        }


class TorchEngineConfig(StrictConfigModel):
    """PyTorch eager on the export's ``.pt2`` programs (exported with ``--torch-programs``)."""

    type: Literal["torch"]
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$")

    def engine_options(self) -> dict[str, Any]:
        """Keyword options of :class:`engines.torch_engine.TorchEngine`."""
        return {"device": self.device}


EngineConfig = Annotated[
    OnnxRuntimeEngineConfig | TensorRTEngineConfig | TorchEngineConfig, Field(discriminator="type")
]


class EmbedderConfig(StrictConfigModel):
    """The CLIP crop embedder: an exported model directory and the engine that runs it."""

    model_dir: Path
    engine: EngineConfig = OnnxRuntimeEngineConfig(type="onnxruntime")
    batch_size: int = Field(16, ge=1, le=1024, description="crops per inference call")
    crop_padding: float = Field(0.1, ge=0, le=2, description="margin around a box, as a fraction of its size")
    square_crops: bool = Field(True, description="square crops so the center crop keeps the whole person")
    verify_hashes: bool = Field(True, description="hash every exported file against the manifest at start")

    @field_validator("model_dir")
    @classmethod
    def _exists(cls, value: Path) -> Path:
        if not value.expanduser().is_dir():
            raise ValueError(f"model directory not found: {value}")
        return value
