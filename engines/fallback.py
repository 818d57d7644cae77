"""Open an engine as configured, or (only when the config says so) degraded on onnxruntime's CPU.

A config that asks for TensorRT on a machine where TensorRT cannot load fails at start, naming the
reason; with ``allow_cpu_fallback: true`` the same ONNX graph runs on onnxruntime's CPU provider
instead and the engine is marked :attr:`~engines.base.Engine.degraded`, which ``/health`` and every
status line show.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engines.base import Engine, EngineUnavailableError, create_engine

logger = logging.getLogger(__name__)


def open_engine(
    kind: str,
    path: Path,
    options: Mapping[str, Any],
    *,
    allow_cpu_fallback: bool = False,
    onnx_path: Path | None = None,
    cpu_options: Mapping[str, Any] | None = None,
) -> Engine:
    """``create_engine(kind, path, **options)``, falling back to onnxruntime's CPU if allowed.

    Args:
        kind: the configured engine kind.
        path: its model file.
        options: its options.
        allow_cpu_fallback: on :class:`EngineUnavailableError` from a GPU engine, run ``onnx_path``
            on onnxruntime's CPU provider, degraded.
        onnx_path: the ONNX graph for the fallback (``path`` when it is one).
        cpu_options: extra onnxruntime options for the fallback (``dims``).

    Raises:
        EngineUnavailableError: the engine cannot load and no fallback is allowed (or possible).
    """
    try:
        return create_engine(kind, path, **options)
    except EngineUnavailableError as exc:
        graph = onnx_path if onnx_path is not None else (path if path.suffix == ".onnx" else None)
        if not allow_cpu_fallback or kind == "onnxruntime" or graph is None or not graph.is_file():
            raise
        engine = create_engine("onnxruntime", graph, providers=["cpu"], **dict(cpu_options or {}))
        engine.degraded = (
            f"{kind} cannot run here ({exc}); running {graph.name} on onnxruntime's CPU because "
            "allow_cpu_fallback is set"
        )
        logger.warning("%s: DEGRADED: %s", engine.name, engine.degraded)
        return engine
