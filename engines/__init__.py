"""Inference runtimes behind one small interface (spec + ``infer``); imports neither agent nor export.

Backends (``onnxruntime``, ``tensorrt``, ``torch``) are imported by :func:`create_engine` when first
used, so importing this package loads no runtime.
"""

from engines.base import (
    Engine,
    EngineError,
    EngineMismatchError,
    EngineSpec,
    EngineTimings,
    EngineUnavailableError,
    InputError,
    TensorSpec,
    create_engine,
    engine_class,
    engine_kinds,
    register_engine,
)
from engines.manifest import (
    Manifest,
    ManifestError,
    manifest_digest,
    read_manifest,
    verify_manifest,
    write_manifest,
)

__all__ = [
    "Engine",
    "EngineError",
    "EngineMismatchError",
    "EngineSpec",
    "EngineTimings",
    "EngineUnavailableError",
    "InputError",
    "Manifest",
    "ManifestError",
    "TensorSpec",
    "create_engine",
    "engine_class",
    "engine_kinds",
    "manifest_digest",
    "read_manifest",
    "register_engine",
    "verify_manifest",
    "write_manifest",
]
