"""ONNX Runtime's optimised graph cached per machine: saved once, loaded after, rebuilt when it breaks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engines import create_engine
from tests.engines.test_engine_onnxruntime import _graph


def _run(path: Path, cache: Path, x: np.ndarray) -> tuple[bool, np.ndarray]:
    with create_engine("onnxruntime", path, providers=["cpu"], optimized_cache_dir=cache) as engine:
        return bool(getattr(engine, "optimized_from_cache", False)), engine.infer({"x": x})["y"]


def test_the_optimised_graph_is_saved_once_and_loaded_by_later_sessions(tmp_path: Path) -> None:
    path, weight = _graph(tmp_path / "tiny.onnx")
    cache = tmp_path / "cache"
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    expected = (x @ weight) / np.linalg.norm(x @ weight, axis=1, keepdims=True)
    first, out = _run(path, cache, x)
    saved = list(cache.glob("tiny-*.ort"))
    assert not first and len(saved) == 1 and not list(cache.glob(".*partial*"))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    second, out = _run(path, cache, x)
    assert second
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_a_broken_cached_graph_is_rebuilt_and_a_changed_source_gets_a_new_one(tmp_path: Path) -> None:
    path, weight = _graph(tmp_path / "tiny.onnx")
    cache = tmp_path / "cache"
    x = np.ones((1, 8), np.float32)
    _run(path, cache, x)
    (saved,) = cache.glob("tiny-*.ort")
    saved.write_bytes(b"not a graph")
    from_cache, out = _run(path, cache, x)
    assert not from_cache and saved.stat().st_size > len(b"not a graph")
    np.testing.assert_allclose(out, (x @ weight) / np.linalg.norm(x @ weight), rtol=1e-5)
    # a new export of the source (another modification time) is optimised again; the old copy goes
    _path, weight = _graph(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    from_cache, out = _run(path, cache, x)
    (fresh,) = cache.glob("tiny-*.ort")
    assert not from_cache and fresh != saved
    np.testing.assert_allclose(out, (x @ weight) / np.linalg.norm(x @ weight), rtol=1e-5)
