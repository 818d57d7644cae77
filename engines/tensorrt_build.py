"""Build a TensorRT engine from an ONNX file with the TensorRT Python API (8.6 and 10.x, Jetson included).

FP16 and INT8 are builder flags; INT8 uses an entropy calibrator fed with calibration batches, whose
scales are written to (and on later builds read from) a calibration cache file, so a target that has
the cache needs no calibration data. A graph that is already quantized (QuantizeLinear/
DequantizeLinear pairs, from ``watchword export yolo|ssd --int8``) carries its scales, measured on
the export's calibration frames: TensorRT builds it with explicit quantization and no calibrator.
Only called by :mod:`engines.tensorrt_engine` on a cache miss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import EngineError
from engines.cache import ProfileShape
from engines.cuda_runtime import CudaRuntime

logger = logging.getLogger(__name__)


class TrtLogger:
    """Routes TensorRT's log messages to :mod:`logging` (built lazily: it subclasses ``trt.ILogger``)."""

    @staticmethod
    def create(trt: Any) -> Any:
        levels = {
            trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL,
            trt.ILogger.Severity.ERROR: logging.ERROR,
            trt.ILogger.Severity.WARNING: logging.WARNING,
            trt.ILogger.Severity.INFO: logging.DEBUG,
            trt.ILogger.Severity.VERBOSE: logging.DEBUG,
        }

        class _Logger(trt.ILogger):  # type: ignore[misc,name-defined,unused-ignore]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                logger.log(levels.get(severity, logging.INFO), "TensorRT: %s", msg)

        return _Logger()


def make_calibrator(
    trt: Any,
    cuda: CudaRuntime,
    batches: Iterable[Mapping[str, np.ndarray]] | None,
    cache_file: Path,
    batch_size: int,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``batches`` (dicts of input arrays, ``batch_size`` rows each).

    With an existing ``cache_file`` TensorRT reads the scales from it and asks for no batch.
    """

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined,unused-ignore]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches: Iterator[Mapping[str, np.ndarray]] = iter(batches or ())
            self._buffers: dict[str, tuple[int, int]] = {}
            self.count = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            pointers = []
            for name in names:
                array = np.ascontiguousarray(batch[name])
                address, size = self._buffers.get(name, (0, 0))
                if size < array.nbytes:
                    if address:
                        cuda.free(address)
                    address, size = cuda.malloc(array.nbytes), array.nbytes
                    self._buffers[name] = (address, size)
                cuda.to_device(address, array)
                pointers.append(address)
            cuda.synchronize()
            self.count += 1
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            if cache_file.is_file():
                logger.info("INT8 scales from calibration cache %s", cache_file)
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_bytes(bytes(cache))
            logger.info("wrote INT8 calibration cache %s after %d batches", cache_file, self.count)

        def free(self) -> None:
            for address, _ in self._buffers.values():
                cuda.free(address)
            self._buffers.clear()

    return _Calibrator()


def parse_onnx(trt: Any, onnx_path: Path) -> tuple[Any, Any, Any]:
    """A TensorRT builder and the network parsed from ``onnx_path`` (explicit batch on TensorRT 8).

    Returns (builder, network, parser); the parser must outlive the network's use.
    """
    trt_logger = TrtLogger.create(trt)
    builder = trt.Builder(trt_logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {'; '.join(errors) or 'unknown error'}")
    return builder, network, parser


def is_quantized(onnx_path: Path) -> bool:
    """Whether the ONNX graph holds QuantizeLinear nodes (explicit INT8 scales)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


def build_engine(
    trt: Any,
    onnx_path: Path,
    *,
    precision: str,
    profile: tuple[ProfileShape, ...],
    cuda: CudaRuntime,
    workspace_mb: int = 2048,
    calibration_cache: Path | None = None,
    calibration_batches: Iterable[Mapping[str, np.ndarray]] | None = None,
) -> tuple[bytes, float]:
    """Parse ``onnx_path`` and build a serialized engine.

    Args:
        trt: the imported ``tensorrt`` module.
        precision: ``fp32``, ``fp16`` (FP16 kernels allowed) or ``int8`` (INT8 with FP16 fallback).
        profile: one shape range per input.
        calibration_cache: INT8 scales file, read when it exists and written after calibration.
        calibration_batches: INT8 calibration inputs, each with ``profile``'s opt batch size.

    Returns:
        (serialized engine bytes, build time in seconds).
    """
    started = time.perf_counter()
    builder, network, _parser = parse_onnx(trt, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    optimisation = builder.create_optimization_profile()
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    for shape in profile:
        if shape.name not in names:
            raise EngineError(
                f"profile input {shape.name!r} is not an input of {onnx_path.name} ({sorted(names)})"
            )
        optimisation.set_shape(shape.name, shape.min, shape.opt, shape.max)
    config.add_optimization_profile(optimisation)
    calibrator = None
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    explicit = precision == "int8" and is_quantized(onnx_path)
    if explicit:
        config.set_flag(trt.BuilderFlag.INT8)
        logger.info("%s is quantized (QDQ): TensorRT takes its INT8 scales from the graph", onnx_path.name)
    elif precision == "int8":
        if calibration_cache is None or (not calibration_cache.is_file() and calibration_batches is None):
            raise EngineError(
                f"an INT8 TensorRT engine of {onnx_path.name} needs a calibration cache or calibration images"
            )
        config.set_flag(trt.BuilderFlag.INT8)
        batch_size = profile[0].opt[0] if profile else 1
        calibrator = make_calibrator(trt, cuda, calibration_batches, calibration_cache, batch_size)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(optimisation)
    logger.info(
        "building TensorRT %s engine for %s (%s); this takes minutes", precision, onnx_path.name, profile
    )
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise EngineError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above)")
    return bytes(serialized), time.perf_counter() - started
