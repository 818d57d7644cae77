"""A cache of ONNX Runtime's optimised graphs (ORT format), so a CPU session loads without optimising.

ONNX Runtime spends most of a session's load on graph optimisation (fusions, NCHWc layouts): on the
converted SSD 0.16 s, against 0.09 s to load the graph it saves after optimising. Saving costs twice
the optimisation (0.34 s of CPU for the SSD, most of it writing), so a session that finds no cached
graph optimises without saving and :class:`BackgroundSave` optimises a second time, later, on a
low-priority thread, to save the graph: a first start does not pay for it, later starts load it.
The saved graph holds optimisations for this CPU, so the key names what it depends on: the source
file (path, size, modification time), the ONNX Runtime version, the CPU (model name and flags) and
the optimisation level. Only CPU sessions use it (a GPU provider's graph partitioning differs). A cached
file that does not load is derived data: it is removed with one warning and the source is loaded.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import re
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

SUFFIX = ".ort"
SAVE_DELAY_S = 30.0
"""How long after a session's start its graph is saved in the background (sooner if it closes)."""
SAVE_NICENESS = 10
"""How much lower than the agent's the background save's CPU priority is (Linux nice steps, per
thread, at most 19): busy cores go to the cameras first, idle ones finish the save."""


@functools.lru_cache(maxsize=1)
def cpu_identity() -> str:
    """The CPU's model name and feature flags (``/proc/cpuinfo``), or the platform's words for it."""
    with contextlib.suppress(OSError):
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "flags", "Features", "CPU part") and key not in fields:
                fields[key] = value.strip()
        if fields:
            return json.dumps(fields, sort_keys=True)
    return f"{platform.machine()} {platform.processor()}"


def cached_path(source: Path, cache_dir: Path, ort_version: str, level: str) -> Path:
    """Where the optimised copy of ``source`` for this machine goes (it may not exist yet)."""
    stat = source.stat()
    parts = [str(source.resolve()), stat.st_size, stat.st_mtime_ns, ort_version, cpu_identity(), level]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
    return cache_dir / f"{source.stem}-{key}{SUFFIX}"


def saving_path(target: Path) -> Path:
    """A temporary name beside ``target`` for ONNX Runtime to save into (moved there when complete).

    Partial saves of processes that are gone (one that exited before its background save ended)
    are removed first: each is as large as the graph."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for partial in target.parent.glob(f".*.partial{SUFFIX}"):
        found = re.search(r"\.(\d+)\.partial", partial.name)
        if found and not Path(f"/proc/{found.group(1)}").exists() and Path("/proc/self").exists():
            with contextlib.suppress(OSError):
                partial.unlink()
    return target.with_name(f".{target.name}.{os.getpid()}.partial{SUFFIX}")


class BackgroundSave:
    """Save an optimised graph into the cache later, on a daemon thread at lower CPU priority.

    A start is when the cores are busiest (other models converting and loading, cameras opening), so
    the save waits ``delay_s`` seconds, or until :meth:`finish` (an engine that closes sooner saves as
    it closes).

    Args:
        save: optimises the source and saves the result to the path it is given (a throwaway
            ONNX Runtime session with ``optimized_model_filepath`` set).
        target: the cache file (:func:`cached_path`); a finished save is moved there.
        name: the graph's name, for the thread's name.
        delay_s: how long after construction the save starts by itself.
    """

    def __init__(self, save: Callable[[Path], object], target: Path, name: str, delay_s: float) -> None:
        self.target = target
        self._go = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(save, delay_s), name=f"ort-cache-{name}", daemon=True
        )
        self._thread.start()

    def _run(self, save: Callable[[Path], object], delay_s: float) -> None:
        self._go.wait(delay_s)
        with contextlib.suppress(OSError, AttributeError):  # Linux: nice applies to this thread only
            thread = threading.get_native_id()
            os.setpriority(
                os.PRIO_PROCESS, thread, min(os.getpriority(os.PRIO_PROCESS, thread) + SAVE_NICENESS, 19)
            )
        try:
            partial = saving_path(self.target)
        except OSError as exc:
            logger.warning("onnxruntime: cannot keep the optimised graph in %s: %s", self.target.parent, exc)
            return
        try:
            save(partial)
        except Exception as exc:  # onnxruntime's pybind exception types, or a full disk
            logger.warning("onnxruntime: cannot save the optimised graph %s: %s", self.target, exc)
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            return
        keep_saved(partial, self.target)

    def finish(self, timeout_s: float) -> bool:
        """Start the save now if it is still waiting, and wait up to ``timeout_s`` seconds for it to
        end; whether it has ended."""
        self._go.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


def keep_saved(partial: Path, target: Path) -> None:
    """Move a finished save into place; on failure (a read-only or full cache) leave nothing behind."""
    try:
        if partial.is_file() and partial.stat().st_size > 0:
            os.replace(partial, target)
            for stale in target.parent.glob(f"{target.name.rsplit('-', 1)[0]}-*{SUFFIX}"):
                if stale != target:
                    stale.unlink(missing_ok=True)  # optimised copies of an older file or runtime
            logger.info("onnxruntime: saved the optimised graph to %s (later starts load it)", target)
    except OSError as exc:
        logger.warning("onnxruntime: cannot keep the optimised graph in %s: %s", target.parent, exc)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def discard(target: Path, reason: object) -> None:
    """Remove a cached graph that failed to load (it is rebuilt from the source)."""
    logger.warning(
        "onnxruntime: the cached optimised graph %s does not load (%s); rebuilding it", target, reason
    )
    with contextlib.suppress(OSError):
        target.unlink(missing_ok=True)
