"""A cheap structural check of an ONNX file before a runtime parses it.

ONNX Runtime can crash the whole process (not raise) on some malformed files, for instance when it
falls back to reading a non-protobuf file as its own flatbuffer format. An edge agent must refuse a
corrupt model with a message instead, so every path that hands an ONNX file to a runtime checks it
here first: a full protobuf parse of the model (without external weights) through the ``onnx``
package.
"""

from __future__ import annotations

from pathlib import Path

from engines.base import EngineError


def check_onnx_file(path: str | Path) -> None:
    """Raise :class:`EngineError` naming ``path`` unless it parses as an ONNX model with a graph."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"cannot load ONNX model {path}: file not found")
    if path.stat().st_size == 0:
        raise EngineError(f"cannot load ONNX model {path}: the file is empty")
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise EngineError(
            f"cannot load ONNX model {path}: not a valid ONNX file ({type(exc).__name__}: {exc})"
        ) from exc
    if not model.HasField("graph") or not model.graph.node:
        raise EngineError(f"cannot load ONNX model {path}: not a valid ONNX file (it holds no graph)")
