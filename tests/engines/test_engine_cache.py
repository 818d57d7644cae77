"""The TensorRT engine cache without a GPU: keys, sidecars, hits, misses, rebuilds and refusals.

The GPU facts and the builder are injected (``TargetFacts`` and a fake ``build``), so everything but
TensorRT itself runs here; ``test_engine_tensorrt.py`` covers the real builds on a GPU.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engines import EngineMismatchError, EngineSpec, TensorSpec
from engines.cache import (
    EngineCache,
    EngineCacheKey,
    ProfileShape,
    batch_profile,
    check_engine_file,
    sidecar_path,
)
from engines.manifest import sha256_file
from engines.tensorrt_engine import TargetFacts, locate_engine, profile_for

ORIN = TargetFacts("10.3.0", "Orin", "8.7")
RTX = TargetFacts("10.3.0", "NVIDIA GeForce RTX 4090", "8.9")
SPEC = EngineSpec(
    inputs=(TensorSpec("pixel_values", ("batch", 3, 224, 224), "float32"),),
    outputs=(TensorSpec("image_embeds", ("batch", 512), "float32"),),
)


def _key(**changes: object) -> EngineCacheKey:
    key = EngineCacheKey(
        onnx_sha256="a" * 64,
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
        precision="fp16",
        profile=batch_profile([("pixel_values", ("batch", 3, 224, 224))], 1, 8, 32),
    )
    return replace(key, **changes)  # type: ignore[arg-type]


class FakeBuilder:
    """Stands in for TensorRT: returns bytes that name what was built, and counts builds."""

    def __init__(self) -> None:
        self.builds: list[EngineCacheKey] = []

    def __call__(self, onnx_path: Path, key: EngineCacheKey) -> tuple[bytes, float]:
        self.builds.append(key)
        return f"engine {key.digest} from {onnx_path.name}".encode(), 12.5


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "vision.onnx"
    path.write_bytes(b"pretend onnx graph")
    return path


def test_the_key_changes_with_every_fact() -> None:
    base = _key()
    assert base.digest == _key().digest
    variants = [
        _key(onnx_sha256="b" * 64),
        _key(tensorrt_version="10.4.0"),
        _key(gpu_name="Jetson AGX Orin"),
        _key(compute_capability="8.6"),
        _key(precision="int8"),
        _key(profile=batch_profile([("pixel_values", ("batch", 3, 224, 224))], 1, 8, 64)),
    ]
    digests = {v.digest for v in variants}
    assert base.digest not in digests and len(digests) == len(variants)
    assert EngineCacheKey.from_dict(base.to_dict()) == base
    stem = base.file_stem("clip vision")
    assert stem.startswith("clip_vision-fp16-sm87-trt10.3.0-") and base.digest[:16] in stem


def test_profiles_come_from_the_spec_with_named_axes_sized() -> None:
    profile = profile_for(SPEC, 1, 8, 32, {})
    assert profile == (ProfileShape("pixel_values", (1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224)),)
    yolo = EngineSpec((TensorSpec("images", ("batch", 3, "height", "width"), "float32"),), ())
    assert profile_for(yolo, 1, 4, 16, {"height": 640, "width": 640})[0].max == (16, 3, 640, 640)
    with pytest.raises(ValueError, match="dynamic axes besides the batch"):
        profile_for(yolo, 1, 4, 16, {})
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ProfileShape("x", (8,), (4,), (16,))


def test_build_on_miss_then_hit_then_miss_when_the_precision_changes(tmp_path: Path, onnx_file: Path) -> None:
    cache = EngineCache(tmp_path / "cache")
    build = FakeBuilder()

    def locate(precision: str) -> tuple[Path, float]:
        return locate_engine(
            onnx_file,
            cache=cache,
            target=ORIN,
            precision=precision,
            profile=lambda: profile_for(SPEC, 1, 8, 32, {}),
            build=build,
        )

    first, build_s = locate("fp16")
    assert build_s == 12.5 and len(build.builds) == 1
    sidecar = json.loads(sidecar_path(first).read_text())
    assert sidecar["facts"]["gpu_name"] == "Orin" and sidecar["facts"]["onnx_sha256"] == sha256_file(
        onnx_file
    )
    assert sidecar["engine"]["sha256"] == sha256_file(first) and sidecar["build_s"] == 12.5
    # The engine file holds exactly the builder's bytes: metadata lives in the sidecar, not in a header.
    assert first.read_bytes() == f"engine {build.builds[0].digest} from vision.onnx".encode()

    second, build_s = locate("fp16")
    assert second == first and build_s == 0.0 and len(build.builds) == 1  # cache hit

    third, _ = locate("int8")
    assert third != first and len(build.builds) == 2 and build.builds[-1].precision == "int8"


def test_a_changed_onnx_file_is_a_miss(tmp_path: Path, onnx_file: Path) -> None:
    cache = EngineCache(tmp_path / "cache")
    build = FakeBuilder()
    kwargs = {
        "cache": cache,
        "target": ORIN,
        "precision": "fp16",
        "profile": lambda: profile_for(SPEC, 1, 8, 32, {}),
    }
    first, _ = locate_engine(onnx_file, build=build, **kwargs)  # type: ignore[arg-type]
    onnx_file.write_bytes(b"another graph")
    second, _ = locate_engine(onnx_file, build=build, **kwargs)  # type: ignore[arg-type]
    assert second != first and len(build.builds) == 2


def test_a_modified_cached_engine_is_rebuilt(tmp_path: Path, onnx_file: Path) -> None:
    cache = EngineCache(tmp_path / "cache")
    build = FakeBuilder()
    kwargs = {
        "cache": cache,
        "target": ORIN,
        "precision": "fp16",
        "profile": lambda: profile_for(SPEC, 1, 8, 32, {}),
    }
    path, _ = locate_engine(onnx_file, build=build, **kwargs)  # type: ignore[arg-type]
    path.write_bytes(b"corrupted")
    again, build_s = locate_engine(onnx_file, build=build, **kwargs)  # type: ignore[arg-type]
    assert again == path and build_s > 0 and len(build.builds) == 2


def test_an_engine_built_for_another_gpu_is_refused_or_rebuilt(tmp_path: Path, onnx_file: Path) -> None:
    cache = EngineCache(tmp_path / "cache")
    build = FakeBuilder()
    orin_engine, _ = locate_engine(
        onnx_file,
        cache=cache,
        target=ORIN,
        precision="fp16",
        profile=lambda: profile_for(SPEC, 1, 8, 32, {}),
        build=build,
    )
    # On the RTX machine the Orin engine does not match ...
    expected = _key(onnx_sha256=sha256_file(onnx_file), gpu_name=RTX.gpu_name, compute_capability="8.9")
    with pytest.raises(
        EngineMismatchError, match=r"GPU 'Orin' != 'NVIDIA GeForce RTX 4090'.*compute capability 8\.7 != 8\.9"
    ):
        check_engine_file(orin_engine, expected)
    # ... so, given the engine file, it is rebuilt into the cache from the ONNX file its sidecar names.
    rebuilt, build_s = locate_engine(
        orin_engine,
        cache=EngineCache(tmp_path / "rtx"),
        target=RTX,
        precision="fp32",
        profile=lambda: (),
        build=build,
    )
    assert rebuilt != orin_engine and build_s > 0
    assert (
        build.builds[-1].gpu_name == RTX.gpu_name and build.builds[-1].precision == "fp16"
    )  # keeps its precision
    # Without the ONNX source it is refused with the reason.
    onnx_file.unlink()
    with pytest.raises(EngineMismatchError, match=r"refusing .*TensorRT|refusing .*GPU 'Orin'"):
        locate_engine(
            orin_engine,
            cache=EngineCache(tmp_path / "rtx2"),
            target=RTX,
            precision="fp16",
            profile=lambda: (),
            build=build,
        )


def test_an_engine_for_another_tensorrt_version_is_refused(tmp_path: Path, onnx_file: Path) -> None:
    build = FakeBuilder()
    engine, _ = locate_engine(
        onnx_file,
        cache=EngineCache(tmp_path / "cache"),
        target=ORIN,
        precision="fp16",
        profile=lambda: profile_for(SPEC, 1, 8, 32, {}),
        build=build,
    )
    onnx_file.unlink()
    newer = TargetFacts("10.7.0", ORIN.gpu_name, ORIN.compute_capability)
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.3\.0 != 10\.7\.0"):
        locate_engine(
            engine,
            cache=EngineCache(tmp_path / "c2"),
            target=newer,
            precision="fp16",
            profile=lambda: (),
            build=build,
        )
    # The same machine accepts it as it is.
    assert (
        locate_engine(
            engine,
            cache=EngineCache(tmp_path / "c3"),
            target=ORIN,
            precision="fp16",
            profile=lambda: (),
            build=build,
        )[0]
        == engine
    )


def test_an_engine_file_without_sidecar_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "shipped.engine"
    engine.write_bytes(b"prebuilt somewhere else")
    with pytest.raises(EngineMismatchError, match="has no sidecar"):
        locate_engine(
            engine,
            cache=EngineCache(tmp_path / "c"),
            target=ORIN,
            precision="fp16",
            profile=lambda: (),
            build=FakeBuilder(),
        )


def test_lookup_reports_why_it_missed(
    tmp_path: Path, onnx_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EngineCache(tmp_path / "cache")
    key = _key(onnx_sha256=sha256_file(onnx_file))
    cache.store(key, "vision", b"bytes", onnx_path=onnx_file, build_s=1.0)
    assert cache.lookup(key, "vision") is not None
    caplog.set_level("INFO")
    assert cache.lookup(replace(key, precision="int8"), "vision") is None
    assert "precision fp16 != int8" in caplog.text
