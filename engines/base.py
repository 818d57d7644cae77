"""The engine interface: a spec of named tensors and ``infer(dict) -> dict``, registered by a type key.

Backends live one per module (``onnxruntime_engine``, ``tensorrt_engine``, ``torch_engine``) and import
their runtime inside that module, so ``import engines`` loads neither onnxruntime, TensorRT nor torch.
Every backend loads (or builds) its model and warms it up in its constructor and reports that start-up
cost in :attr:`Engine.timings` apart from steady-state latency.
"""

from __future__ import annotations

import importlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

Dim = int | str
"""One tensor dimension: a fixed size, ``-1`` for a dynamic one, or a symbolic name such as ``"batch"``."""


class EngineError(RuntimeError):
    """An engine that cannot be built, loaded or run; the message names the file and the reason."""


class EngineUnavailableError(EngineError):
    """The runtime a backend needs is not installed or has no usable device; the message names the extra."""


class EngineMismatchError(EngineError):
    """A prebuilt engine made for another GPU, TensorRT version, precision or ONNX file."""


class InputError(EngineError, ValueError):
    """Inputs that do not match the engine's spec (missing or unknown names, wrong dtype or shape)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one input or output tensor.

    Attributes:
        name: the tensor's name in the graph.
        shape: one entry per axis: a fixed size, ``-1`` or a symbolic name for a dynamic axis.
        dtype: numpy dtype name (``"float32"``, ``"float16"``, ``"int64"`` ...).
    """

    name: str
    shape: tuple[Dim, ...]
    dtype: str

    def __post_init__(self) -> None:
        np.dtype(self.dtype)  # raises TypeError for an unknown dtype name

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        """Indices of the axes whose size is only known at run time."""
        return tuple(i for i, dim in enumerate(self.shape) if not isinstance(dim, int) or dim < 0)

    def concrete_shape(self, dynamic: int = 1, **named: int) -> tuple[int, ...]:
        """The shape with each dynamic axis set to ``named[symbol]`` or else ``dynamic``."""
        return tuple(
            dim
            if isinstance(dim, int) and dim >= 0
            else named.get(dim if isinstance(dim, str) else "", dynamic)
            for dim in self.shape
        )

    def matches(self, array: np.ndarray) -> str | None:
        """Why ``array`` does not fit this spec, or None when it does."""
        if array.dtype != np.dtype(self.dtype):
            return f"{self.name}: expected dtype {self.dtype}, got {array.dtype}"
        if array.ndim != len(self.shape):
            return f"{self.name}: expected {len(self.shape)} dimensions {self.shape}, got shape {array.shape}"
        for axis, (dim, size) in enumerate(zip(self.shape, array.shape, strict=True)):
            if isinstance(dim, int) and dim >= 0 and dim != size:
                return f"{self.name}: axis {axis} must be {dim}, got shape {array.shape}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(name=str(data["name"]), shape=tuple(data["shape"]), dtype=str(data["dtype"]))


@dataclass(frozen=True)
class EngineSpec:
    """The named inputs and outputs of an engine, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def input(self, name: str) -> TensorSpec:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise KeyError(name)

    def output(self, name: str) -> TensorSpec:
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise KeyError(name)

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`InputError` unless ``inputs`` has exactly the spec's names, dtypes and ranks."""
        missing = [name for name in self.input_names if name not in inputs]
        unknown = [name for name in inputs if name not in self.input_names]
        if missing or unknown:
            raise InputError(
                f"inputs must be exactly {list(self.input_names)}; missing {missing}, unknown {unknown}"
            )
        problems = [p for t in self.inputs if (p := t.matches(np.asarray(inputs[t.name]))) is not None]
        if problems:
            raise InputError("; ".join(problems))

    def dummy_inputs(self, batch: int = 1, **named: int) -> dict[str, np.ndarray]:
        """Zero-filled inputs with every dynamic axis set to ``batch`` (or ``named[symbol]``), for warm-up."""
        return {
            t.name: np.zeros(t.concrete_shape(batch, **named), dtype=np.dtype(t.dtype)) for t in self.inputs
        }

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineSpec:
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
        )


@dataclass
class EngineTimings:
    """Start-up costs kept apart from steady-state inference, in seconds.

    Attributes:
        build_s: building or compiling the model (a TensorRT engine build; 0 on a cache hit).
        load_s: reading the model and creating the session or execution context.
        warmup_s: the warm-up inferences run at construction.
        calls: steady-state :meth:`Engine.infer` calls since construction.
        infer_s: wall time spent in those calls.
    """

    build_s: float = 0.0
    load_s: float = 0.0
    warmup_s: float = 0.0
    calls: int = 0
    infer_s: float = 0.0

    @property
    def latency_s(self) -> float:
        """Mean steady-state latency of one :meth:`Engine.infer` call (0 before any call)."""
        return self.infer_s / self.calls if self.calls else 0.0


class Engine(ABC):
    """One loaded model behind ``infer(dict[str, np.ndarray]) -> dict[str, np.ndarray]``.

    Subclasses set :attr:`spec`, load and warm up in their constructor (calling :meth:`_warm_up`) and
    implement :meth:`_infer` and :meth:`_release`.

    Attributes:
        kind: the registry key of the backend (``"onnxruntime"``, ``"tensorrt"``, ``"torch"``).
        name: a human-readable name for logs (the model file and the device).
        spec: the input and output tensors.
        timings: build, load and warm-up time, and steady-state latency.
        degraded: why the engine runs on a slower device than configured (a GPU provider missing and
            ``allow_cpu_fallback`` set), or None when it runs where it was asked to.
    """

    kind: str = ""

    def __init__(self, name: str, spec: EngineSpec) -> None:
        self.name = name
        self.spec = spec
        self.timings = EngineTimings()
        self.degraded: str | None = None
        self._closed = False

    def health(self) -> dict[str, Any]:
        """The engine's own state for ``/health`` and status lines: kind, name, degraded and why."""
        return {
            "engine": self.kind,
            "name": self.name,
            "status": "degraded" if self.degraded else "ok",
            "reason": self.degraded,
            "closed": self._closed,
        }

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once.

        Args:
            inputs: one array per spec input, with the spec's dtype and rank.

        Returns:
            One host array per spec output, keyed by output name.

        Raises:
            InputError: inputs that do not match the spec.
            EngineError: the engine is closed or the runtime failed.
        """
        if self._closed:
            raise EngineError(f"{self.name} is closed")
        arrays = {name: np.ascontiguousarray(value) for name, value in inputs.items()}
        self.spec.check_inputs(arrays)
        started = time.perf_counter()
        outputs = self._infer(arrays)
        self.timings.infer_s += time.perf_counter() - started
        self.timings.calls += 1
        return outputs

    def close(self) -> None:
        """Release the session, context and device memory; further :meth:`infer` calls fail."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _warm_up(self, batch: int = 1, runs: int = 1, **dims: int) -> None:
        """Run ``runs`` inferences on zero inputs, timed as warm-up rather than steady state.

        ``dims`` sizes symbolic axes by name; every other dynamic axis gets ``batch``.
        """
        started = time.perf_counter()
        dummy = self.spec.dummy_inputs(batch, **dims)
        for _ in range(runs):
            self._infer(dummy)
        self.timings.warmup_s = time.perf_counter() - started
        logger.info(
            "%s ready: build %.2f s, load %.2f s, warm-up %.2f s",
            self.name,
            self.timings.build_s,
            self.timings.load_s,
            self.timings.warmup_s,
        )

    @abstractmethod
    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run validated, contiguous inputs through the model."""

    @abstractmethod
    def _release(self) -> None:
        """Free the runtime's resources."""


EngineFactory = Callable[..., Engine]

# Backend modules by registry key; a module registers its class when imported.
_BACKEND_MODULES: dict[str, str] = {
    "onnxruntime": "engines.onnxruntime_engine",
    "tensorrt": "engines.tensorrt_engine",
    "torch": "engines.torch_engine",
    "opencv-dnn": "engines.opencv_dnn_engine",
}
_REGISTRY: dict[str, EngineFactory] = {}


def register_engine(kind: str) -> Callable[[type[Engine]], type[Engine]]:
    """Class decorator that registers an :class:`Engine` subclass under ``kind``."""

    def decorate(cls: type[Engine]) -> type[Engine]:
        if kind in _REGISTRY and _REGISTRY[kind] is not cls:
            raise ValueError(f"engine kind {kind!r} is already registered to {_REGISTRY[kind]!r}")
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return decorate


def engine_kinds() -> tuple[str, ...]:
    """Every known engine kind, whether or not its runtime is installed."""
    return tuple(sorted(set(_BACKEND_MODULES) | set(_REGISTRY)))


def engine_class(kind: str) -> EngineFactory:
    """The registered factory for ``kind``, importing its backend module on first use."""
    if kind not in _REGISTRY and kind in _BACKEND_MODULES:
        importlib.import_module(_BACKEND_MODULES[kind])
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise EngineError(f"unknown engine kind {kind!r}; known: {', '.join(engine_kinds())}") from None


def create_engine(kind: str, path: str | Path, **options: Any) -> Engine:
    """Load the model at ``path`` with the backend registered as ``kind``.

    Args:
        kind: ``"onnxruntime"``, ``"tensorrt"`` or ``"torch"`` (or any registered key).
        path: the model file (an ONNX graph; for torch a ``.pt2`` exported program).
        options: backend options, passed to the backend's constructor.

    Raises:
        EngineError: unknown kind, missing or corrupt file, or a runtime failure.
        EngineUnavailableError: the backend's runtime is not installed.
    """
    factory = engine_class(kind)
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{kind}: model file not found: {path}")
    return factory(path, **options)
