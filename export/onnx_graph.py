"""torch -> ONNX with ``torch.export`` and a declarative spec, plus the graph fix-ups after it.

The spec's symbolic axes become ``torch.export.Dim`` ranges and are named after the spec in the ONNX
file (the exporter would call them ``s0``, ``s43``...). The graph is checked, its opset recorded, and
the exported program can be saved for the torch engine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from engines.torch_engine import save_program
from export.errors import ExportError
from export.specs import ExportSpec

logger = logging.getLogger(__name__)

EXTERNAL_DATA_BYTES = 1_800_000_000  # stay clear of protobuf's 2 GiB limit


def torch_to_onnx(
    module: Any,
    spec: ExportSpec,
    path: str | Path,
    *,
    opset: int = 17,
    program_path: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Export ``module`` (whose ``forward`` takes the spec's inputs by name) to ``path``.

    Args:
        module: a ``torch.nn.Module`` in eval mode.
        spec: names, shapes, dynamic axes and dummy inputs.
        path: the ONNX file to write.
        opset: the ONNX opset (17 or newer).
        program_path: also save the ``torch.export`` program here, for the torch engine.
        seed: seed of the tracing inputs.

    Returns:
        ``{"opset": int, "bytes": int, "external_data": bool}``.
    """
    import onnx
    import torch

    if opset < 17:
        raise ExportError(f"opset {opset} is too old: LayerNormalization needs 17 or newer")
    path = Path(path)
    rng = np.random.default_rng(seed)
    dummy = spec.dummy_inputs(2, rng)  # batch 2: torch.export specialises sizes 0 and 1
    args = tuple(torch.from_numpy(dummy[name]) for name in spec.input_names)
    dims: dict[str, Any] = {}
    dynamic_shapes: dict[str, dict[int, Any]] = {}
    for tensor in spec.inputs:
        axes = {}
        for axis in tensor.dynamic_axes:
            symbol = str(tensor.shape[axis])
            dims.setdefault(symbol, torch.export.Dim(symbol, min=1, max=spec.max_batch))
            axes[axis] = dims[symbol]
        dynamic_shapes[tensor.name] = axes
    try:
        program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as exc:  # torch.export raises many error types for untraceable code
        raise ExportError(
            f"torch.export failed for the {spec.graph} graph: {type(exc).__name__}: {exc}"
        ) from exc
    if program_path is not None:
        save_program(program, spec.engine_spec, program_path)
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    external = size > EXTERNAL_DATA_BYTES
    try:
        torch.onnx.export(
            program,
            args,
            str(path),
            input_names=spec.input_names,
            output_names=spec.output_names,
            opset_version=opset,
            dynamo=True,
            external_data=external,
            optimize=True,
            verbose=False,
        )
    except Exception as exc:  # the ONNX exporter's errors are not typed
        raise ExportError(
            f"ONNX export failed for the {spec.graph} graph: {type(exc).__name__}: {exc}"
        ) from exc
    model = onnx.load(str(path), load_external_data=False)
    name_dynamic_axes(model, spec)
    actual = opset_of(model)
    if actual != opset:
        logger.warning(
            "the %s graph has opset %d (asked for %d): the exporter could not convert it",
            spec.graph,
            actual,
            opset,
        )
    if external:  # only the graph proto changed; the weights stay in the external file next to it
        path.write_bytes(model.SerializeToString())
    else:
        onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx.checker.ValidationError and friends
        raise ExportError(f"the exported {spec.graph} graph is not valid ONNX: {exc}") from exc
    return {"opset": actual, "bytes": path.stat().st_size, "external_data": external}


def opset_of(model: Any) -> int:
    """The default-domain opset of an ``onnx.ModelProto``."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ExportError("the graph imports no default-domain opset")


def name_dynamic_axes(model: Any, spec: ExportSpec) -> None:
    """Give the spec's symbolic axes their names (``batch``) on the graph's inputs and outputs."""
    axes = spec.dynamic_axes()
    for value in (*model.graph.input, *model.graph.output):
        for axis, symbol in axes.get(value.name, {}).items():
            dims = value.type.tensor_type.shape.dim
            if axis < len(dims):
                dims[axis].dim_param = symbol


def convert_fp16(onnx_in: str | Path, onnx_out: str | Path) -> None:
    """Store weights and compute in float16, keeping float32 inputs and outputs (for GPUs)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(onnx_in))
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(converted, str(onnx_out))
