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


def test_a_graph_checked_in_a_staging_folder_is_cached_for_where_it_is_moved(tmp_path: Path) -> None:
    """An export is checked in its staging folder, then renamed into place: the optimised graph its
    check saved is keyed for the final path, so the first load from there reads it."""
    staging, final = tmp_path / ".export.partial", tmp_path / "export"
    staging.mkdir()
    path, weight = _graph(staging / "tiny.onnx")
    x = np.ones((2, 8), np.float32)
    with create_engine(
        "onnxruntime",
        path,
        providers=["cpu"],
        optimized_cache_dir=staging / ".cache",
        optimized_cache_as=final / "tiny.onnx",
    ) as engine:
        assert not engine.optimized_from_cache  # type: ignore[attr-defined]
    staging.rename(final)
    from_cache, out = _run(final / "tiny.onnx", final / ".cache", x)
    assert from_cache
    expected = (x @ weight) / np.linalg.norm(x @ weight, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    # without the final path the key is the staging path's: a load from the final path misses
    other = tmp_path / ".other.partial"
    other.mkdir()
    _graph(other / "tiny.onnx")
    _run(other / "tiny.onnx", other / ".cache", x)
    moved = tmp_path / "other"
    other.rename(moved)
    assert not _run(moved / "tiny.onnx", moved / ".cache", x)[0]
