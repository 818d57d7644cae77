"""What ``GET /health`` says: one status for the whole agent and the parts behind it.

``status`` is ``starting`` until every camera delivered its first frame, ``ok`` when every part
works, ``degraded`` when any does not (the API answers 503 then), with one line per problem in
``problems``. Parts: cameras (a recovered camera shows no old error), the alert sinks (backlog,
dead letters, failures in a row), storage (events held in memory because the disk refused them,
events lost, the free bytes of each filesystem that holds state: the alerts database's, the
evidence's and the state directory's), the re-ranker's LMM and the models' engines (a
model on the CPU because ``allow_cpu_fallback`` let it start without its GPU is degraded).
Every text is redacted. A camera's ``fps`` is the rate its frames are analysed at (over the last
few seconds), ``source_fps`` the rate its source delivers them; ``falling_behind`` says why when a
live camera drops frames because the agent cannot keep up (a warning the status repeats, not a
problem: the frames it analyses are still analysed).
``GET /livez`` is the separate liveness answer for container probes: the process serves requests.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.api.metrics import Metric
from agent.redact import redact_text, redact_value

if TYPE_CHECKING:
    from agent.alerts import AlertManager
    from agent.pipeline import CameraStatus
    from agent.rerank import RerankService

HEALTHY_CAMERA_STATES = {"running", "ended"}


def camera_health(statuses: list[CameraStatus]) -> tuple[dict[str, Any], list[str], bool]:
    """Per camera entries, the problems among them, and whether any is still starting."""
    cameras: dict[str, Any] = {}
    problems: list[str] = []
    starting = False
    for status in statuses:
        source, counters = status.source, status.counters
        # A camera without a source is not opened yet (starting) or was refused at open (failed).
        state = source.state.value if source is not None else ("failed" if counters.error else "starting")
        error = None
        if state not in HEALTHY_CAMERA_STATES and state != "starting":
            error = counters.error or (source.last_error if source is not None else None)
            problems.append(f"camera {counters.camera_id}: {state}" + (f": {error}" if error else ""))
        starting |= state == "starting"
        cameras[counters.camera_id] = {
            "state": state,
            "last_frame_age_s": None if source is None else source.last_frame_age_s,
            "fps": None if source is None else round(counters.analysed_fps, 2),
            "source_fps": None if source is None else round(source.fps, 2),
            "falling_behind": status.keep_up_problem(),
            "frames": counters.frames,
            "drops": 0 if source is None else source.drops,
            "reconnects": 0 if source is None else source.reconnects,
            "error": None if error is None else redact_text(error),
        }
    return cameras, problems, starting


def rerank_health(rerank: RerankService | None, queued: int = 0) -> tuple[dict[str, Any] | None, list[str]]:
    """The LMM re-ranker's counters (``queued``: candidates waiting in the queue in front of it);
    degraded while it fails at least as often as it succeeds."""
    if rerank is None:
        return None, []
    stats = rerank.stats()
    failing = stats.failed > 0 and stats.failed >= stats.completed
    entry = {
        "calls": stats.calls,
        "completed": stats.completed,
        "failed": stats.failed,
        "queued": queued,
        "last_error": None if stats.last_error is None else redact_text(stats.last_error),
    }
    problems = [f"re-ranker: {stats.failed} of {stats.failed + stats.completed} failed"] if failing else []
    return entry, problems


def storage_filesystems(folders: Mapping[str, Path]) -> list[dict[str, Any]]:
    """Free and total bytes of each filesystem that holds one of ``folders`` (named by config key),
    one entry per filesystem with the names it holds; None where it cannot be measured."""
    entries: dict[object, dict[str, Any]] = {}
    for name, folder in folders.items():
        try:
            device: object = os.stat(folder).st_dev
            usage = shutil.disk_usage(folder)
            free, total = usage.free, usage.total
        except OSError:
            device, free, total = ("unmeasured", name), None, None
        entry = entries.setdefault(device, {"holds": [], "free_bytes": free, "total_bytes": total})
        entry["holds"].append(name)
    return list(entries.values())


def storage_metrics(folders: Mapping[str, Path]) -> list[Metric]:
    """Free bytes of each filesystem holding state, labelled with the config keys it holds."""
    free = Metric("watchword_storage_free_bytes", "gauge", "Free bytes of a filesystem that holds state")
    for entry in storage_filesystems(folders):
        if entry["free_bytes"] is not None:
            free.add(entry["free_bytes"], holds=",".join(entry["holds"]))
    return [free]


def build_health(
    *,
    site: str,
    started_at: float,
    queries_evaluated: bool,
    cameras: list[CameraStatus],
    alerts: AlertManager,
    rerank: RerankService | None,
    storage_folders: Mapping[str, Path],
    candidates_queued: int = 0,
    engines: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``/health`` document (see the module docstring).

    ``storage_folders``: the folders that hold state by config key (``alerts.database`` -> its
    folder, ``alerts.evidence_dir``, ``state_dir``); ``storage.free_bytes`` is the least free of
    their filesystems (the first to refuse a write), ``storage.filesystems`` has each one.
    """
    camera_entries, problems, starting = camera_health(cameras)
    engine_entries = list(engines or [])
    # A model running off the device its config asks for (allow_cpu_fallback) is degraded.
    problems.extend(
        f"engine {e.get('name') or e.get('model')}: {e['reason']}" for e in engine_entries if e.get("reason")
    )
    alerts_health = alerts.health()
    problems.extend(alerts_health["problems"])
    lmm, lmm_problems = rerank_health(rerank, candidates_queued)
    problems.extend(lmm_problems)
    storage = dict(alerts_health["storage"])
    filesystems = storage_filesystems(storage_folders)
    measured = [fs["free_bytes"] for fs in filesystems if fs["free_bytes"] is not None]
    storage["free_bytes"] = min(measured) if measured else None
    storage["filesystems"] = filesystems
    status = "degraded" if problems else ("starting" if starting else "ok")
    return redact_value(
        {
            "status": status,
            "problems": problems,
            "site": site,
            "uptime_s": round(time.time() - started_at, 1),
            "queries_evaluated": queries_evaluated,
            "cameras": camera_entries,
            "sinks": alerts_health["sinks"],
            "storage": storage,
            "lmm": lmm,
            "engines": engine_entries,
        }
    )
