"""INT8 for ONNX Runtime on CPU: static quantization calibrated on the site's images.

Weights are quantized per output channel (int8), activations per tensor (uint8) with scales measured
on calibration batches; the graph keeps QuantizeLinear/DequantizeLinear pairs (QDQ), which ONNX
Runtime fuses into integer kernels. By default only MatMul, Gemm and Conv are quantized: they hold
nearly all the arithmetic, and leaving normalisation and softmax in float keeps the embeddings
accurate; a detector may add its activations (``ops``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from export.errors import CalibrationError, ExportError

logger = logging.getLogger(__name__)

QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")
DYNAMIC_OPS = ("MatMul",)


def quantize_int8(
    onnx_in: str | Path,
    onnx_out: str | Path,
    calibration: Iterable[Mapping[str, np.ndarray]],
    *,
    method: str = "minmax",
    per_channel: bool = True,
    exclude_nodes: Sequence[str] = (),
    activations: str = "uint8",
    ops: Sequence[str] = QUANTIZED_OPS,
) -> dict[str, object]:
    """Write a statically quantized (QDQ, int8 weights, uint8 activations) copy of ``onnx_in``.

    Args:
        onnx_in: the fp32 graph.
        onnx_out: where to write the int8 graph (may equal ``onnx_in``).
        calibration: input dicts to measure activation ranges on (at least one).
        method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        per_channel: per-output-channel weight scales.
        exclude_nodes: names of nodes left in float (sensitive layers such as a detection head).
        activations: ``"uint8"`` (asymmetric) or ``"int8"`` (symmetric, S8S8).
        ops: the op types quantized. Adding ``"Clip"`` (MobileNet's Relu6) lets ONNX Runtime drop
            each Clip after a convolution and quantize the convolution's output over the Clip's
            0-6 range instead of its pre-activation range (about ten times finer steps).

    Returns:
        What was done, for the manifest (method, batches, samples, quantized ops, seconds).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ExportError(f"unknown calibration method {method!r}; choose from {sorted(methods)}")
    data = [{name: np.ascontiguousarray(value) for name, value in batch.items()} for batch in calibration]
    if not data:
        raise CalibrationError("INT8 quantization needs at least one calibration batch")
    samples = sum(len(next(iter(batch.values()))) for batch in data)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(data)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    def run(prepared: Path, quantized: Path) -> None:
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops),
            per_channel=per_channel,
            activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            nodes_to_exclude=list(exclude_nodes),
            extra_options={
                "CalibTensorRangeSymmetric": False,
                "ActivationSymmetric": activations == "int8",
            },
        )

    onnx_in = Path(onnx_in)
    seconds = _quantize_with(onnx_in, Path(onnx_out), "INT8 quantization", run)
    logger.info("quantized %s to INT8 on %d samples in %.1f s", onnx_in.name, samples, seconds)
    return {
        "method": method,
        "format": "onnxruntime-qdq",
        "batches": len(data),
        "samples": samples,
        "ops": list(ops),
        "per_channel": per_channel,
        "activations": activations,
        "fp32_nodes": len(exclude_nodes),
        "seconds": round(seconds, 2),
    }


def quantize_int8_dynamic(onnx_in: str | Path, onnx_out: str | Path) -> dict[str, object]:
    """Write a dynamically quantized copy of ``onnx_in``: int8 MatMul weights (per output channel),
    activations quantized per batch at run time, so no calibration data is needed.

    ONNX Runtime runs these MatMuls as fused integer kernels (``DynamicQuantizeMatMul``, AVX-512 VNNI
    where the CPU has it); on the ViT-B/32 image tower here that is faster than the static QDQ graph
    (``python -m bench.embed``). Convolutions stay in float (the patch embedding is ~1 % of the work).

    Returns:
        What was done, for the manifest (format, ops, seconds).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def run(prepared: Path, quantized: Path) -> None:
        quantize_dynamic(
            str(prepared),
            str(quantized),
            op_types_to_quantize=list(DYNAMIC_OPS),
            per_channel=True,
            weight_type=QuantType.QInt8,
        )

    onnx_in = Path(onnx_in)
    seconds = _quantize_with(onnx_in, Path(onnx_out), "dynamic INT8 quantization", run)
    logger.info("quantized %s to dynamic INT8 in %.1f s", onnx_in.name, seconds)
    return {
        "format": "onnxruntime-dynamic",
        "ops": list(DYNAMIC_OPS),
        "per_channel": True,
        "seconds": round(seconds, 2),
    }


def _quantize_with(onnx_in: Path, onnx_out: Path, what: str, run: Callable[[Path, Path], None]) -> float:
    """The steps both kinds of quantization share: ``onnx_in`` prepared (shape inference) in a
    scratch folder, ``run(prepared, quantized)``, its metadata copied, moved to ``onnx_out``.
    Returns the seconds it took; a failure of ONNX Runtime's quantizer is an :class:`ExportError`."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="watchword-quant-") as work:
        prepared = Path(work) / "prepared.onnx"
        _prepare(onnx_in, prepared, Path(work))
        quantized = Path(work) / "quantized.onnx"
        try:
            run(prepared, quantized)
        except Exception as exc:  # onnxruntime raises plain exceptions of many types here
            raise ExportError(f"{what} of {onnx_in.name} failed: {type(exc).__name__}: {exc}") from exc
        _copy_metadata(onnx_in, quantized)
        shutil.move(str(quantized), onnx_out)
    return time.perf_counter() - started


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Run in ``path``: onnxruntime's shape inference dumps files into the working directory on failure."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _prepare(source: Path, target: Path, work: Path) -> None:
    """onnxruntime's recommended pre-processing (shape inference, graph optimisation) before quantizing.

    Symbolic shape inference cannot follow graphs with dynamic spatial axes (YOLO); those get the
    plain ONNX shape inference, and a graph neither can handle is quantized as exported.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _working_directory(work):
        for symbolic in (True, False):
            try:
                quant_pre_process(str(source.resolve()), str(target), skip_symbolic_shape=not symbolic)
                return
            except Exception as exc:  # shape inference raises bare Exceptions
                logger.info("quantization pre-processing (symbolic shapes: %s) failed: %s", symbolic, exc)
    logger.warning("quantization pre-processing failed; quantizing %s as exported", source.name)
    shutil.copyfile(source, target)


def _copy_metadata(source: Path, target: Path) -> None:
    """Carry the source graph's metadata (ultralytics stores class names and stride there) over."""
    import onnx

    original = onnx.load(str(source), load_external_data=False)
    if not original.metadata_props:
        return
    model = onnx.load(str(target))
    present = {prop.key for prop in model.metadata_props}
    for prop in original.metadata_props:
        if prop.key not in present:
            model.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(model, str(target))
