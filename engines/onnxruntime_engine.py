"""ONNX Runtime backend, with the TensorRT, CUDA and CPU execution providers in a configured order.

The providers are given as an explicit fallback order (``["tensorrt", "cuda", "cpu"]``); the ones this
onnxruntime build lacks are dropped, and the order actually used is logged when the session starts.
The TensorRT execution provider keeps its engines in a cache directory per ONNX file hash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines import ort_optimized
from engines.base import Engine, EngineError, EngineSpec, EngineUnavailableError, TensorSpec, register_engine
from engines.manifest import sha256_file
from engines.onnx_check import check_onnx_file

logger = logging.getLogger(__name__)

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
DEFAULT_PROVIDERS = ("cpu",)

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


GPU_PROVIDERS = ("tensorrt", "cuda")
CACHE_SAVE_WAIT_S = 10.0
"""How long closing an engine waits for its optimised graph's background save to end; an unfinished
save is left (its partial file is removed by a later save)."""

MISSING_GPU_HINT = (
    "install onnxruntime-gpu alone (pip install 'watchword[gpu]'; uninstall the CPU-only onnxruntime "
    "first: with both installed CUDAExecutionProvider is lost), or set allow_cpu_fallback: true to run "
    "degraded on the CPU"
)


def resolve_providers(
    requested: Sequence[str], available: Sequence[str], allow_cpu_fallback: bool = False
) -> tuple[list[str], str | None]:
    """The requested providers (short names) to use, in order, and why the engine is degraded (or None).

    A requested GPU provider (``tensorrt``, ``cuda``) that ``available`` (ORT names) lacks is an
    error, unless ``allow_cpu_fallback``: then the engine runs on what is left (the CPU at worst)
    and the reason is returned, to be shown in ``/health`` and every status line.

    Raises:
        EngineError: an unknown or empty provider list.
        EngineUnavailableError: a GPU provider is missing and no fallback is allowed.
    """
    unknown = [name for name in requested if name not in PROVIDERS]
    if unknown:
        raise EngineError(f"unknown onnxruntime providers {unknown}; choose from {list(PROVIDERS)}")
    if not requested:
        raise EngineError("at least one onnxruntime provider must be configured")
    wanted = list(dict.fromkeys(requested))
    missing = [name for name in wanted if PROVIDERS[name] not in available]
    missing_gpu = [name for name in missing if name in GPU_PROVIDERS]
    if missing_gpu and not allow_cpu_fallback:
        raise EngineUnavailableError(
            f"the config asks for the onnxruntime providers {wanted} but this onnxruntime build lacks "
            f"{missing_gpu} (it has {list(available)}): {MISSING_GPU_HINT}"
        )
    usable = [name for name in wanted if name not in missing]
    if missing_gpu:
        usable = usable or ["cpu"]
        return usable, (
            f"asked for onnxruntime {wanted}, this onnxruntime build lacks {missing_gpu} "
            f"(it has {list(available)}); running on {usable} because allow_cpu_fallback is set"
        )
    if not usable:
        raise EngineUnavailableError(
            f"none of the onnxruntime providers {wanted} is in this build (it has {list(available)})"
        )
    return usable, None


def _profile_string(spec: EngineSpec, batch: int, dims: Mapping[str, int]) -> str:
    parts = []
    for tensor in spec.inputs:
        shape = tensor.concrete_shape(batch, **dims)
        parts.append(f"{tensor.name}:{'x'.join(str(d) for d in shape)}")
    return ",".join(parts)


def spec_from_session(session: Any) -> EngineSpec:
    """The :class:`EngineSpec` of an ``onnxruntime.InferenceSession``."""

    def tensor(arg: Any) -> TensorSpec:
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise EngineError(f"tensor {arg.name} has unsupported type {arg.type}")
        shape = tuple(dim if isinstance(dim, int | str) else -1 for dim in arg.shape)
        return TensorSpec(arg.name, shape, dtype)

    return EngineSpec(
        inputs=tuple(tensor(a) for a in session.get_inputs()),
        outputs=tuple(tensor(a) for a in session.get_outputs()),
    )


@register_engine("onnxruntime")
class OnnxRuntimeEngine(Engine):
    """An ``onnxruntime.InferenceSession`` behind the :class:`Engine` interface.

    Args:
        path: the ONNX file.
        providers: short provider names in fallback order, from ``tensorrt``, ``cuda``, ``cpu``.
        device_id: the GPU for the CUDA and TensorRT providers.
        intra_op_threads: CPU threads per operator; None lets onnxruntime choose.
        trt_cache_dir: where the TensorRT provider caches engines (a sub-directory per ONNX hash).
        trt_fp16: let the TensorRT provider build FP16 kernels.
        trt_int8: let the TensorRT provider build INT8 kernels (needs a QDQ graph or a calibration table).
        trt_max_batch: the largest batch of the TensorRT provider's optimisation profile.
        dims: sizes of symbolic axes other than the batch (``{"height": 640}``), for the warm-up and
            the TensorRT profile; every other dynamic axis is taken as the batch axis.
        warmup: run one inference at construction.
        allow_cpu_fallback: run on what is left when a requested GPU provider is missing or does not
            load (the engine is then :attr:`~engines.base.Engine.degraded`); otherwise that fails.
        check_file: parse the file with the ``onnx`` package first (:func:`check_onnx_file`), so a
            corrupt file is refused with a message instead of crashing ONNX Runtime. False only for
            a file whose sha256 the caller has just verified against its export manifest (the
            exporter loaded that very file in ONNX Runtime): it skips importing ``onnx`` (~0.05 s).
        spinning: let the CPU threads busy-wait between operators (ONNX Runtime's default: lower
            latency for a model run back to back, like the detector). False for a model run now and
            then beside others (the pose estimator): its idle threads then leave the cores to them.
        optimized_cache_dir: keep ONNX Runtime's optimised graph here and load it on later starts
            (:mod:`engines.ort_optimized`; CPU sessions only; a miss saves it in the background).
            None: optimise at every load.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        device_id: int = 0,
        intra_op_threads: int | None = None,
        trt_cache_dir: str | Path | None = None,
        trt_fp16: bool = False,
        trt_int8: bool = False,
        trt_max_batch: int = 32,
        dims: Mapping[str, int] | None = None,
        warmup: bool = True,
        allow_cpu_fallback: bool = False,
        check_file: bool = True,
        spinning: bool = True,
        optimized_cache_dir: str | Path | None = None,
    ) -> None:
        path = Path(path)
        self.optimized_from_cache = False
        self._cache_save: ort_optimized.BackgroundSave | None = None
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineUnavailableError(
                "the onnxruntime engine needs onnxruntime: pip install 'watchword[cpu]' (or "
                f"'watchword[gpu]') ({exc})"
            ) from exc
        if check_file:
            check_onnx_file(path)
        started = time.perf_counter()
        usable, degraded = resolve_providers(
            list(providers), ort.get_available_providers(), allow_cpu_fallback
        )

        def session_options() -> Any:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            if intra_op_threads is not None:
                options.intra_op_num_threads = intra_op_threads
            if not spinning:
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            for axis, size in (dims or {}).items():
                # a known size lets the optimiser fold shapes (a dynamic-size graph run at one size)
                options.add_free_dimension_override_by_name(axis, int(size))
            return options

        options = session_options()
        provider_list: list[tuple[str, dict[str, Any]]] = []
        for name in usable:
            if name == "tensorrt":
                cache = Path(trt_cache_dir or Path.home() / ".cache" / "watchword" / "ort-tensorrt")
                cache = cache.expanduser() / sha256_file(path)[:16]
                cache.mkdir(parents=True, exist_ok=True)
                provider_list.append(
                    (
                        PROVIDERS[name],
                        {
                            "device_id": device_id,
                            "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": str(cache),
                            "trt_timing_cache_enable": True,
                            "trt_timing_cache_path": str(cache),
                            "trt_fp16_enable": trt_fp16,
                            "trt_int8_enable": trt_int8,
                        },
                    )
                )
            elif name == "cuda":
                provider_list.append((PROVIDERS[name], {"device_id": device_id}))
            else:
                provider_list.append((PROVIDERS[name], {}))
        session = None
        cached = None
        if optimized_cache_dir is not None and usable == ["cpu"]:
            cached = ort_optimized.cached_path(
                path, Path(optimized_cache_dir).expanduser(), ort.__version__, "all"
            )
            if cached.is_file():
                try:
                    session = ort.InferenceSession(
                        str(cached), sess_options=options, providers=[PROVIDERS["cpu"]]
                    )
                    self.optimized_from_cache = True
                except Exception as exc:  # onnxruntime's pybind exception types
                    ort_optimized.discard(cached, exc)
        try:
            if session is None:
                session = ort.InferenceSession(
                    str(path),
                    sess_options=options,
                    providers=[name for name, _ in provider_list],
                    provider_options=[opts for _, opts in provider_list],
                )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise EngineError(f"cannot load ONNX model {path}: {type(exc).__name__}: {exc}") from exc
        if cached is not None and not self.optimized_from_cache:
            key = cached

            def save(partial: Path) -> None:
                if ort_optimized.cached_path(path, key.parent, ort.__version__, "all") != key:
                    return  # the file was replaced since this session loaded it: not its graph to keep
                saving = session_options()
                saving.intra_op_num_threads = 1  # nothing runs in this session: no thread pool
                saving.optimized_model_filepath = str(partial)
                ort.InferenceSession(str(path), sess_options=saving, providers=[PROVIDERS["cpu"]])

            self._cache_save = ort_optimized.BackgroundSave(
                save, cached, path.stem, ort_optimized.SAVE_DELAY_S
            )
        spec = spec_from_session(session)
        sizes = dict(dims or {})
        if "tensorrt" in usable and any(t.dynamic_axes for t in spec.inputs):
            # Rebuilding the session with the profile is cheap: no engine has been built yet.
            trt_options = provider_list[usable.index("tensorrt")][1]
            trt_options["trt_profile_min_shapes"] = _profile_string(spec, 1, sizes)
            trt_options["trt_profile_opt_shapes"] = _profile_string(spec, max(1, trt_max_batch // 2), sizes)
            trt_options["trt_profile_max_shapes"] = _profile_string(spec, trt_max_batch, sizes)
            session = ort.InferenceSession(
                str(path),
                sess_options=options,
                providers=[name for name, _ in provider_list],
                provider_options=[opts for _, opts in provider_list],
            )
        active = session.get_providers()
        super().__init__(f"onnxruntime({path.name}, {'>'.join(active)})", spec)
        self.path = path
        self.providers = tuple(active)
        self._session = session
        self.dims = sizes
        logger.info(
            "onnxruntime %s for %s: requested %s, available here %s, using %s",
            ort.__version__,
            path.name,
            list(providers),
            [short for short, full in PROVIDERS.items() if full in ort.get_available_providers()],
            active,
        )
        dropped = [short for short in usable if short in GPU_PROVIDERS and PROVIDERS[short] not in active]
        if dropped:
            # onnxruntime lists a provider as available but drops it when its CUDA/TensorRT libraries
            # do not load, and only says so at its own log level: make it an error or a degradation.
            reason = (
                f"onnxruntime could not start {dropped} for {path.name} (their CUDA/TensorRT libraries "
                f"did not load); it runs on {active}"
            )
            if not allow_cpu_fallback:
                raise EngineUnavailableError(f"{reason}: {MISSING_GPU_HINT}")
            degraded = f"{reason}; allow_cpu_fallback is set"
        self.degraded = degraded
        if degraded:
            logger.warning("%s: DEGRADED: %s", self.name, degraded)
        self.timings.load_s = time.perf_counter() - started
        if warmup:
            if "TensorrtExecutionProvider" in active:
                first = time.perf_counter()
                self._infer(self.spec.dummy_inputs(1, **self.dims))  # builds (or loads) the TensorRT engine
                self.timings.build_s = time.perf_counter() - first
            self._warm_up(1, **self.dims)

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(None, inputs)
        except Exception as exc:  # onnxruntime's pybind exception types
            raise EngineError(f"{self.name} failed: {type(exc).__name__}: {exc}") from exc
        return dict(zip(self.spec.output_names, values, strict=True))

    def _release(self) -> None:
        self._session = None
        if self._cache_save is not None and not self._cache_save.finish(CACHE_SAVE_WAIT_S):
            logger.info(
                "onnxruntime: the optimised graph of %s is still being saved; left unfinished", self.path
            )
