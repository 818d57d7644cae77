"""The TensorRT backend's control flow on CPU, against a stand-in for the TensorRT API and the CUDA runtime.

The stand-in implements the calls the backend makes (builder, parser, optimisation profile, INT8
calibrator, runtime, execution context with ``set_input_shape``/``set_tensor_address``/
``execute_async_v3``) for a one-MatMul graph, computing with numpy. It proves the engine builds into the
cache, hits it on a second load, rebuilds for another precision, moves data through device buffers,
feeds the calibrator and writes its calibration cache. The real API runs in ``test_engine_tensorrt.py``.
"""

from __future__ import annotations

import json
import sys
import threading
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from engines import EngineSpec, InputError, TensorSpec, create_engine


class FakeCuda:
    """Device memory as byte arrays keyed by address."""

    instances: ClassVar[list[FakeCuda]] = []

    def __init__(self, device_id: int = 0) -> None:
        self.memory: dict[int, bytearray] = {}
        self.next = 4096
        self.stream: object | None = object()
        self.made_current_in: list[int] = []  # threads that selected this GPU (the runtime's is per thread)
        FakeCuda.instances.append(self)

    def make_current(self) -> None:
        if threading.get_ident() not in self.made_current_in:
            self.made_current_in.append(threading.get_ident())

    def device_facts(self) -> tuple[str, str]:
        return "Fake GPU", "8.9"

    def malloc(self, nbytes: int) -> int:
        address, self.next = self.next, self.next + max(nbytes, 1) + 256
        self.memory[address] = bytearray(max(nbytes, 1))
        return address

    def free(self, address: int) -> None:
        del self.memory[address]

    def to_device(self, address: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).tobytes()
        self.memory[address][: len(data)] = data

    def to_host(self, array: np.ndarray, address: int) -> None:
        array.reshape(-1).view(np.uint8)[:] = np.frombuffer(
            bytes(self.memory[address][: array.nbytes]), np.uint8
        )

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        self.stream = None


def fake_tensorrt(weight: np.ndarray, log: list[str]) -> types.ModuleType:
    trt: Any = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"

    severities = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

    class ILogger:
        Severity = severities

        def __init__(self) -> None:
            pass

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    trt.ILogger, trt.IInt8EntropyCalibrator2 = ILogger, IInt8EntropyCalibrator2
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.nptype = lambda dtype: np.float32

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            self.name, self.shape, self.dtype = name, shape, "float"

    class Network:
        def __init__(self) -> None:
            self.inputs: list[Tensor] = []
            self.outputs: list[Tensor] = []

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        get_input = lambda self, i: self.inputs[i]  # noqa: E731
        get_output = lambda self, i: self.outputs[i]  # noqa: E731

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Any) -> None:
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            import onnx

            graph = onnx.load(path).graph
            for value, target in (
                (graph.input[0], self.network.inputs),
                (graph.output[0], self.network.outputs),
            ):
                dims = tuple(d.dim_value if d.dim_value else -1 for d in value.type.tensor_type.shape.dim)
                target.append(Tensor(value.name, dims))
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, list[list[int]]] = {}

        def set_shape(
            self, name: str, lo: tuple[int, ...], mid: tuple[int, ...], hi: tuple[int, ...]
        ) -> None:
            self.shapes[name] = [list(lo), list(mid), list(hi)]

    class Config:
        def __init__(self) -> None:
            self.flags: list[str] = []
            self.profiles: list[Profile] = []
            self.int8_calibrator: Any = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            pass

        def set_flag(self, flag: str) -> None:
            self.flags.append(flag)

        def add_optimization_profile(self, profile: Profile) -> None:
            self.profiles.append(profile)

        def set_calibration_profile(self, profile: Profile) -> None:
            pass

    class Builder:
        def __init__(self, logger: Any) -> None:
            pass

        create_network = lambda self, flags: Network()  # noqa: E731
        create_builder_config = lambda self: Config()  # noqa: E731
        create_optimization_profile = lambda self: Profile()  # noqa: E731

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            calibrated = 0
            if config.int8_calibrator is not None and config.int8_calibrator.read_calibration_cache() is None:
                while config.int8_calibrator.get_batch(["x"]) is not None:
                    calibrated += 1
                config.int8_calibrator.write_calibration_cache(b"int8 scales")
            log.append(f"build {sorted(config.flags)} calibration batches {calibrated}")
            return json.dumps({"flags": sorted(config.flags), "profile": config.profiles[0].shapes}).encode()

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shapes: dict[str, list[int]] = {"x": [-1, 8]}
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            low, _, high = self.engine.profile[name]
            if not all(lo <= s <= hi for lo, s, hi in zip(low, shape, high, strict=True)):
                return False
            self.shapes[name] = list(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self.shapes["x"]) if name == "x" else (self.shapes["x"][0], weight.shape[1])

        def set_tensor_address(self, name: str, address: int) -> None:
            self.addresses[name] = address

        def execute_async_v3(self, stream: object) -> bool:
            cuda = FakeCuda.instances[-1]
            x = np.empty(self.get_tensor_shape("x"), np.float32)
            cuda.to_host(x, self.addresses["x"])
            cuda.to_device(self.addresses["y"], (x @ weight).astype(np.float32))
            return True

    class Engine:
        def __init__(self, data: dict[str, Any]) -> None:
            self.profile = data["profile"]

        num_io_tensors = 2
        get_tensor_name = lambda self, i: ["x", "y"][i]  # noqa: E731
        get_tensor_mode = lambda self, name: "input" if name == "x" else "output"  # noqa: E731
        get_tensor_dtype = lambda self, name: "float"  # noqa: E731
        get_tensor_shape = lambda self, name: (-1, 8) if name == "x" else (-1, 4)  # noqa: E731
        get_tensor_profile_shape = lambda self, name, index: self.profile[name]  # noqa: E731
        create_execution_context = lambda self: Context(self)  # noqa: E731

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            try:
                return Engine(json.loads(data))
            except ValueError:
                return None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, np.ndarray, list[str]]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import engines.cuda_runtime

    weight = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weight, "w")],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    log: list[str] = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(weight, log))
    monkeypatch.setattr(engines.cuda_runtime, "CudaRuntime", FakeCuda)
    return path, weight, log


def test_build_cache_hit_rebuild_and_inference(
    fake_gpu: tuple[Path, np.ndarray, list[str]], tmp_path: Path
) -> None:
    path, weight, log = fake_gpu
    cache = tmp_path / "cache"
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    with create_engine(
        "tensorrt", path, cache_dir=cache, precision="fp16", max_batch=16, opt_batch=4
    ) as engine:
        assert engine.timings.build_s > 0 and engine.spec.input("x").shape == ("batch", 8)
        np.testing.assert_allclose(engine.infer({"x": x})["y"], x @ weight, rtol=1e-6)
        with pytest.raises(InputError, match="exceeds the engine's max batch 16"):
            engine.infer({"x": np.zeros((17, 8), np.float32)})
        first = engine.engine_path  # type: ignore[attr-defined]
    assert log == ["build ['fp16'] calibration batches 0"]
    sidecar = json.loads(first.with_name(first.name + ".json").read_text())
    assert sidecar["facts"]["gpu_name"] == "Fake GPU" and sidecar["facts"]["profile"][0]["max"] == [16, 8]
    with create_engine(
        "tensorrt", path, cache_dir=cache, precision="fp16", max_batch=16, opt_batch=4
    ) as engine:
        assert engine.timings.build_s == 0.0 and engine.engine_path == first  # type: ignore[attr-defined]
    assert len(log) == 1  # cache hit: no build
    with create_engine(
        "tensorrt", path, cache_dir=cache, precision="fp32", max_batch=16, opt_batch=4
    ) as engine:
        assert engine.engine_path != first  # type: ignore[attr-defined]
    assert log[-1] == "build [] calibration batches 0" and len(list(cache.glob("*.engine"))) == 2
    assert all(not cuda.memory for cuda in FakeCuda.instances)  # every buffer freed on close


def test_int8_calibrates_once_then_reuses_the_calibration_cache(
    fake_gpu: tuple[Path, np.ndarray, list[str]], tmp_path: Path
) -> None:
    path, _, log = fake_gpu
    calibration = tmp_path / "vision.int8.calib"
    batches = [{"x": np.full((4, 8), i, np.float32)} for i in range(5)]
    spec = EngineSpec(
        (TensorSpec("x", ("batch", 8), "float32"),), (TensorSpec("y", ("batch", 4), "float32"),)
    )
    options = {
        "cache_dir": tmp_path / "c1",
        "precision": "int8",
        "max_batch": 8,
        "opt_batch": 4,
        "spec": spec,
    }
    with create_engine(
        "tensorrt", path, calibration_cache=calibration, calibration_batches=batches, **options
    ):
        pass
    assert (
        log == ["build ['fp16', 'int8'] calibration batches 5"] and calibration.read_bytes() == b"int8 scales"
    )
    options["cache_dir"] = tmp_path / "c2"  # another machine: builds again, from the shipped scales
    with create_engine("tensorrt", path, calibration_cache=calibration, **options):
        pass
    assert log[-1] == "build ['fp16', 'int8'] calibration batches 0"


def test_int8_without_scales_or_images_is_refused(
    fake_gpu: tuple[Path, np.ndarray, list[str]], tmp_path: Path
) -> None:
    path, _, _ = fake_gpu
    from engines import EngineError

    with pytest.raises(EngineError, match="needs a calibration cache or calibration images"):
        create_engine(
            "tensorrt", path, cache_dir=tmp_path, precision="int8", calibration_cache=tmp_path / "none.calib"
        )
    assert FakeCuda.instances[-1].stream is None  # the stream was released on the failed start


def test_an_engine_built_on_another_thread_selects_its_gpu_where_it_infers(
    fake_gpu: tuple[Path, np.ndarray, list[str]], tmp_path: Path
) -> None:
    """As with the detector's loader: built on one thread, inferring on another (the CUDA runtime's
    current device is per thread, so the inferring thread must select the engine's GPU itself)."""
    path, weight, _ = fake_gpu
    built: list[Any] = []

    def build() -> None:
        built.append(create_engine("tensorrt", path, cache_dir=tmp_path / "cache", max_batch=8))

    loader = threading.Thread(target=build)
    loader.start()
    loader.join()
    with built[0] as engine:
        x = np.ones((2, 8), np.float32)
        np.testing.assert_allclose(engine.infer({"x": x})["y"], x @ weight, rtol=1e-6)
        assert threading.get_ident() in FakeCuda.instances[-1].made_current_in


def test_a_quantized_graph_builds_int8_from_its_own_scales(
    fake_gpu: tuple[Path, np.ndarray, list[str]], tmp_path: Path
) -> None:
    """An export of ``--int8`` (QDQ) carries the scales of its calibration frames: INT8 with no
    calibrator and no calibration cache (the fp32 graph of the same weights is refused without them)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _path, weight, log = fake_gpu
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["xd"]),
            helper.make_node("MatMul", ["xd", "w"], ["y"]),
        ],
        "tiny-qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
            numpy_helper.from_array(np.array(0, np.int8), "zero"),
        ],
    )
    quantized = tmp_path / "tiny.int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(quantized))
    with create_engine("tensorrt", quantized, cache_dir=tmp_path / "cache", precision="int8") as engine:
        assert engine.engine_path.name.split("-")[1] == "int8"  # type: ignore[attr-defined]
    assert log == ["build ['fp16', 'int8'] calibration batches 0"]
