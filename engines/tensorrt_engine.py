"""TensorRT backend: builds engines on the target from ONNX, caches them, and runs them.

Given an ONNX file the engine is looked up in the cache under a key of the ONNX sha256, the TensorRT
version, the GPU name and compute capability, the precision and the batch profile; on a miss it is
built and stored with a sidecar JSON. Given a prebuilt ``.engine`` file its sidecar must match this
machine; if it does not, the engine is rebuilt into the cache from the ONNX file the sidecar names,
or refused when that file is gone. Device buffers go through :class:`engines.cuda_runtime.CudaRuntime`
(cuda-python, or torch), so torch is not required.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import (
    Engine,
    EngineError,
    EngineMismatchError,
    EngineSpec,
    EngineUnavailableError,
    InputError,
    TensorSpec,
    register_engine,
)
from engines.cache import (
    EngineCache,
    EngineCacheKey,
    ProfileShape,
    batch_profile,
    check_engine_file,
    read_sidecar,
)
from engines.manifest import sha256_file

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/watchword/tensorrt")


@dataclass(frozen=True)
class TargetFacts:
    """The machine an engine is for: TensorRT version, GPU name and compute capability."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def profile_for(
    spec: EngineSpec, min_batch: int, opt_batch: int, max_batch: int, dims: Mapping[str, int]
) -> tuple[ProfileShape, ...]:
    """The batch profile of ``spec``'s inputs, with symbolic non-batch axes sized by ``dims``."""
    shapes = []
    for tensor in spec.inputs:
        shape = [tensor.shape[0], *(dims.get(d, d) if isinstance(d, str) else d for d in tensor.shape[1:])]
        shapes.append((tensor.name, shape))
    return batch_profile(shapes, min_batch, opt_batch, max_batch)


def locate_engine(
    path: Path,
    *,
    cache: EngineCache,
    target: TargetFacts,
    precision: str,
    profile: Callable[[], tuple[ProfileShape, ...]],
    build: Callable[[Path, EngineCacheKey], tuple[bytes, float]],
    model_name: str | None = None,
) -> tuple[Path, float]:
    """Find or build the engine file for ``path`` on ``target``; no TensorRT or GPU calls of its own.

    Args:
        path: an ``.onnx`` file, or a prebuilt ``.engine`` file with its sidecar.
        cache: where engines are stored.
        target: this machine's facts.
        precision: wanted precision (for an ``.onnx`` path; an engine file keeps its own).
        profile: returns the batch profile (for an ``.onnx`` path).
        build: builds ``(engine bytes, seconds)`` from an ONNX file for a key.
        model_name: readable prefix of cached file names (default: the file's stem).

    Returns:
        (engine file, build time in seconds, 0 on a cache hit).

    Raises:
        EngineMismatchError: an engine file made for another target whose ONNX source is not available.
    """
    name = model_name or path.stem
    if path.suffix == ".engine":
        data = read_sidecar(path)
        recorded = EngineCacheKey.from_dict(data["facts"])
        expected = EngineCacheKey(
            onnx_sha256=recorded.onnx_sha256,
            tensorrt_version=target.tensorrt_version,
            gpu_name=target.gpu_name,
            compute_capability=target.compute_capability,
            precision=recorded.precision,
            profile=recorded.profile,
        )
        try:
            check_engine_file(path, expected)
            return path, 0.0
        except EngineMismatchError as exc:
            source = Path(str(data.get("onnx", {}).get("path", "")))
            if not source.is_file() or sha256_file(source) != recorded.onnx_sha256:
                raise EngineMismatchError(
                    f"refusing {path}: {exc}; its ONNX source {source} is not available to rebuild from"
                ) from exc
            logger.warning("%s; rebuilding it from %s into %s", exc, source, cache.directory)
            key = EngineCacheKey(recorded.onnx_sha256, *_facts(target), recorded.precision, recorded.profile)
            return _build_into(cache, key, name, source, build)
    key = EngineCacheKey(sha256_file(path), *_facts(target), precision, profile())
    hit = cache.lookup(key, name)
    if hit is not None:
        logger.info("engine cache hit: %s", hit)
        return hit, 0.0
    return _build_into(cache, key, name, path, build)


def _facts(target: TargetFacts) -> tuple[str, str, str]:
    return target.tensorrt_version, target.gpu_name, target.compute_capability


def _build_into(
    cache: EngineCache,
    key: EngineCacheKey,
    name: str,
    onnx_path: Path,
    build: Callable[[Path, EngineCacheKey], tuple[bytes, float]],
) -> tuple[Path, float]:
    cached = cache.lookup(key, name)
    if cached is not None:
        return cached, 0.0
    engine_bytes, build_s = build(onnx_path, key)
    stored = cache.store(key, name, engine_bytes, onnx_path=onnx_path, build_s=build_s)
    logger.info("built %s in %.1f s", stored, build_s)
    return stored, build_s


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the tensorrt engine needs the TensorRT Python API: pip install 'watchword[trt]' "
            f"(on Jetson it comes with JetPack) ({exc})"
        ) from exc
    return trt


def _parse_spec(trt: Any, onnx_path: Path) -> EngineSpec:
    """Inputs and outputs of an ONNX file as TensorRT's parser sees them (used when no spec is given)."""
    from engines.tensorrt_build import parse_onnx

    _builder, network, _parser = parse_onnx(trt, onnx_path)

    def tensor(t: Any) -> TensorSpec:
        shape = tuple("batch" if i == 0 and d < 0 else int(d) for i, d in enumerate(t.shape))
        return TensorSpec(t.name, shape, np.dtype(trt.nptype(t.dtype)).name)

    return EngineSpec(
        inputs=tuple(tensor(network.get_input(i)) for i in range(network.num_inputs)),
        outputs=tuple(tensor(network.get_output(i)) for i in range(network.num_outputs)),
    )


@register_engine("tensorrt")
class TensorRTEngine(Engine):
    """A TensorRT engine built on this machine from ONNX (or a checked prebuilt file), as an :class:`Engine`.

    Args:
        path: an ``.onnx`` file (the normal case) or a prebuilt ``.engine`` file with its sidecar.
        cache_dir: the engine cache directory.
        precision: ``fp32``, ``fp16`` or ``int8`` (an ``.engine`` file keeps its own).
        min_batch, opt_batch, max_batch: the optimisation profile of the batch axis.
        dims: sizes of symbolic non-batch axes (``{"height": 640, "width": 640}``).
        spec: the ONNX file's spec (from the export manifest); parsed from the ONNX file when None.
        device_id: the GPU.
        workspace_mb: builder workspace limit in MiB.
        calibration_cache: INT8 scales file (read if present, written after calibration).
        calibration_batches: INT8 calibration inputs with ``opt_batch`` rows each (when there is no cache).
        warmup: run one inference at construction.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        cache_dir: str | Path = DEFAULT_CACHE_DIR,
        precision: str = "fp16",
        min_batch: int = 1,
        opt_batch: int = 8,
        max_batch: int = 32,
        dims: Mapping[str, int] | None = None,
        spec: EngineSpec | None = None,
        device_id: int = 0,
        workspace_mb: int = 2048,
        calibration_cache: str | Path | None = None,
        calibration_batches: Iterable[Mapping[str, np.ndarray]] | None = None,
        warmup: bool = True,
    ) -> None:
        from engines.cuda_runtime import CudaRuntime
        from engines.tensorrt_build import build_engine

        path = Path(path)
        trt = _import_tensorrt()
        started = time.perf_counter()
        cuda = CudaRuntime(device_id)
        self._cuda = cuda
        self._buffers: dict[str, int] = {}
        sizes = dict(dims or {})
        try:
            gpu_name, capability = cuda.device_facts()
            target = TargetFacts(trt.__version__, gpu_name, capability)

            def profile() -> tuple[ProfileShape, ...]:
                return profile_for(spec or _parse_spec(trt, path), min_batch, opt_batch, max_batch, sizes)

            def build(onnx_path: Path, key: EngineCacheKey) -> tuple[bytes, float]:
                return build_engine(
                    trt,
                    onnx_path,
                    precision=key.precision,
                    profile=key.profile,
                    cuda=cuda,
                    workspace_mb=workspace_mb,
                    calibration_cache=Path(calibration_cache) if calibration_cache else None,
                    calibration_batches=calibration_batches,
                )

            engine_path, build_s = locate_engine(
                path,
                cache=EngineCache(cache_dir),
                target=target,
                precision=precision,
                profile=profile,
                build=build,
            )
            engine_spec = self._load(trt, engine_path)
        except BaseException:
            self._release()
            raise
        if spec is not None and set(spec.input_names) != set(engine_spec.input_names):
            self._release()
            raise EngineError(
                f"{engine_path.name} has inputs {engine_spec.input_names}, expected {spec.input_names}"
            )
        super().__init__(f"tensorrt({engine_path.name}, {gpu_name})", spec or engine_spec)
        self.engine_path = engine_path
        self.target = target
        self.timings.build_s = build_s
        self.timings.load_s = time.perf_counter() - started - build_s
        if warmup:
            self._warm_up(1, **sizes)

    def _load(self, trt: Any, engine_path: Path) -> EngineSpec:
        """Deserialize the engine, create its context and device buffers; return the engine's own spec."""
        from engines.tensorrt_build import TrtLogger

        self._trt_logger = TrtLogger.create(trt)
        self._runtime = trt.Runtime(self._trt_logger)
        engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise EngineError(f"TensorRT could not deserialize {engine_path} (corrupt file or other version)")
        context = engine.create_execution_context()
        self._engine, self._context = engine, context
        self._dtypes: dict[str, np.dtype[Any]] = {}
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        # Size every buffer for the profile's largest shapes: set them, then read the output shapes.
        for name in input_names:
            largest = tuple(int(d) for d in engine.get_tensor_profile_shape(name, 0)[2])
            if -1 in tuple(engine.get_tensor_shape(name)) and not context.set_input_shape(name, largest):
                raise EngineError(f"{engine_path.name}: cannot set {name} to its profile maximum {largest}")
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        for name in names:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            largest = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in largest):
                raise EngineError(f"{engine_path.name}: {name} has no bounded shape {largest}")
            self._dtypes[name] = dtype
            self._buffers[name] = self._cuda.malloc(int(np.prod(largest)) * dtype.itemsize)
            context.set_tensor_address(name, self._buffers[name])
            declared = tuple(
                "batch" if axis == 0 and d < 0 else int(d)
                for axis, d in enumerate(engine.get_tensor_shape(name))
            )
            (inputs if name in input_names else outputs).append(TensorSpec(name, declared, dtype.name))
        self.max_batch = int(engine.get_tensor_profile_shape(input_names[0], 0)[2][0]) if input_names else 1
        return EngineSpec(tuple(inputs), tuple(outputs))

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        context, cuda = self._context, self._cuda
        cuda.make_current()  # built on another thread (the detector's loader) than the one inferring
        for name, value in inputs.items():
            if value.shape and value.shape[0] > self.max_batch:
                raise InputError(
                    f"{name}: batch {value.shape[0]} exceeds the engine's max batch {self.max_batch}"
                )
            array = np.ascontiguousarray(value, dtype=self._dtypes[name])
            if not context.set_input_shape(name, array.shape):
                raise InputError(f"{name}: shape {array.shape} is outside the engine's profile")
            cuda.to_device(self._buffers[name], array)
        results = {}
        for tensor in self.spec.outputs:
            shape = tuple(int(d) for d in context.get_tensor_shape(tensor.name))
            results[tensor.name] = np.empty(shape, dtype=self._dtypes[tensor.name])
        if not context.execute_async_v3(cuda.stream):
            raise EngineError(f"{self.name}: execute_async_v3 failed")
        for name, array in results.items():
            cuda.to_host(array, self._buffers[name])
        cuda.synchronize()
        return {
            name: array.astype(np.float32) if array.dtype == np.float16 else array
            for name, array in results.items()
        }

    def _release(self) -> None:
        self._cuda.make_current()
        for address in self._buffers.values():
            self._cuda.free(address)
        self._buffers.clear()
        self._context = None
        self._engine = None
        if self._cuda.stream is not None:
            self._cuda.close()
