"""A cache of ONNX Runtime's optimised graphs (ORT format), so a CPU session loads without optimising.

ONNX Runtime spends most of a session's load on graph optimisation (fusions, NCHWc layouts): on the
converted SSD 0.8 s of a 1.0 s load here, against 0.3 s to load the graph it saves after optimising.
The first session of a graph saves that graph into the cache; later sessions load it. The saved
graph holds optimisations for this CPU, so the key names what it depends on: the source file (path,
size, modification time), the ONNX Runtime version, the CPU (model name and flags) and the
optimisation level. Only CPU sessions use it (a GPU provider's graph partitioning differs). A cached
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
from pathlib import Path

logger = logging.getLogger(__name__)

SUFFIX = ".ort"


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


def cached_path(
    source: Path, cache_dir: Path, ort_version: str, level: str, identity: Path | None = None
) -> Path:
    """Where the optimised copy of ``source`` for this machine goes (it may not exist yet).

    ``identity``: the path ``source`` will be loaded from later, when it is a staging copy that a
    rename moves there (size and modification time kept); None: ``source``'s own path.
    """
    stat = source.stat()
    where = Path(identity if identity is not None else source).resolve()
    parts = [str(where), stat.st_size, stat.st_mtime_ns, ort_version, cpu_identity(), level]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
    return cache_dir / f"{source.stem}-{key}{SUFFIX}"


def saving_path(target: Path) -> Path:
    """A temporary name beside ``target`` for ONNX Runtime to save into (moved there when complete)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.name}.{os.getpid()}.partial{SUFFIX}")


def keep_saved(partial: Path, target: Path, shown: Path | None = None) -> None:
    """Move a finished save into place; on failure (a read-only or full cache) leave nothing behind.

    ``shown``: the folder to name in the log where ``target``'s folder is a staging copy of it."""
    try:
        if partial.is_file() and partial.stat().st_size > 0:
            os.replace(partial, target)
            for stale in target.parent.glob(f"{target.name.rsplit('-', 1)[0]}-*{SUFFIX}"):
                if stale != target:
                    stale.unlink(missing_ok=True)  # optimised copies of an older file or runtime
            logger.info(
                "onnxruntime: saved the optimised graph to %s (later starts load it)",
                shown / target.name if shown is not None else target,
            )
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
