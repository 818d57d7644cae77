"""ONNX Runtime's optimised graph cached per machine: saved once, loaded after, rebuilt when it breaks."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import numpy as np

from engines import create_engine, ort_optimized
from tests.engines.test_engine_onnxruntime import _graph


def _run(path: Path, cache: Path, x: np.ndarray) -> tuple[bool, np.ndarray]:
    with create_engine("onnxruntime", path, providers=["cpu"], optimized_cache_dir=cache) as engine:
        return bool(getattr(engine, "optimized_from_cache", False)), engine.infer({"x": x})["y"]


def test_the_optimised_graph_is_saved_once_and_loaded_by_later_sessions(tmp_path: Path) -> None:
    """The first session saves nothing while the start is busy (a save costs twice the optimisation);
    the graph is saved later, or as the engine closes, and later sessions load it."""
    path, weight = _graph(tmp_path / "tiny.onnx")
    cache = tmp_path / "cache"
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    expected = (x @ weight) / np.linalg.norm(x @ weight, axis=1, keepdims=True)
    with create_engine("onnxruntime", path, providers=["cpu"], optimized_cache_dir=cache) as engine:
        engine.infer({"x": x})
        assert not list(cache.glob("*.ort"))
    assert len(list(cache.glob("tiny-*.ort"))) == 1
    for late in cache.glob("tiny-*.ort"):
        late.unlink()
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


def test_the_save_runs_on_a_lower_priority_thread_and_a_dead_process_partial_is_removed(
    tmp_path: Path,
) -> None:
    """A first start optimises without saving and saves in the background at lower CPU priority (the
    cameras come first); a partial save of a process that exited before its save ended is removed."""
    cache = tmp_path / "cache"
    cache.mkdir()
    exited = subprocess.Popen(["true"])
    exited.wait()
    leftover = cache / f".tiny-0123456789abcdef.ort.{exited.pid}.partial.ort"
    leftover.write_bytes(b"half a graph")
    mine = cache / f".tiny-fedcba9876543210.ort.{os.getpid()}.partial.ort"
    mine.write_bytes(b"being written")
    seen: dict[str, object] = {}

    def save(partial: Path) -> None:
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["thread"] = threading.current_thread().name
        partial.write_bytes(b"optimised")

    target = cache / "tiny-0011223344556677.ort"
    assert ort_optimized.BackgroundSave(save, target, "tiny", delay_s=0.0).finish(10.0)
    assert seen["nice"] == min(os.getpriority(os.PRIO_PROCESS, 0) + ort_optimized.SAVE_NICENESS, 19)
    assert seen["thread"] == "ort-cache-tiny" and target.read_bytes() == b"optimised"
    assert not leftover.exists() and mine.exists()


def test_a_failed_background_save_leaves_no_file_and_the_engine_runs(tmp_path: Path) -> None:
    """A cache on a read-only folder: the session runs, the save fails quietly, nothing is left."""
    path, weight = _graph(tmp_path / "tiny.onnx")
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        x = np.ones((1, 8), np.float32)
        if os.access(cache, os.W_OK):  # root writes anyway: make the cache a file instead
            cache.chmod(0o700)
            cache.rmdir()
            cache.write_text("not a folder")
        from_cache, out = _run(path, cache, x)
        assert not from_cache
        np.testing.assert_allclose(out, (x @ weight) / np.linalg.norm(x @ weight), rtol=1e-5)
    finally:
        if cache.is_dir():
            cache.chmod(0o700)
    assert not cache.is_dir() or not list(cache.iterdir())


def test_a_graph_replaced_while_its_session_ran_is_not_saved_under_the_old_key(tmp_path: Path) -> None:
    """The save runs late (30 s in, or at close): by then the file may be a new export, whose graph
    is not the one this session optimised."""
    path, _weight = _graph(tmp_path / "tiny.onnx")
    cache = tmp_path / "cache"
    with create_engine("onnxruntime", path, providers=["cpu"], optimized_cache_dir=cache):
        _graph(path)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert not list(cache.glob("*.ort")) and not list(cache.glob(".*partial*"))
