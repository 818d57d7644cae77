"""Live per-camera status (a rich table on a terminal, periodic log lines otherwise) and the summary."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.pipeline import CameraStatus, RunSummary
from agent.redact import redact_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0


def _row(status: CameraStatus, error_width: int | None = None) -> list[str]:
    source, counters = status.source, status.counters
    # No source yet: still starting, unless opening it failed (then the error says why).
    state = source.state.value if source is not None else ("failed" if counters.error else "starting")
    age = "-" if source is None or source.last_frame_age_s is None else f"{source.last_frame_age_s:.1f}s"
    # fps: frames analysed per second; source: frames the camera delivered per second (a live
    # camera drops what the agent does not take in time)
    fps = f"{counters.analysed_fps:.1f}" if source is not None else "-"
    source_fps = f"{source.fps:.1f}" if source is not None else "-"
    error = redact_text(counters.error or (source.last_error if source is not None else None) or "")
    return [
        counters.camera_id,
        state,
        fps,
        source_fps,
        str(counters.frames),
        str(counters.active_tracks),
        str(counters.tracks_seen),
        str(source.drops if source is not None else 0),
        str(source.reconnects if source is not None else 0),
        age,
        error if error_width is None else error[:error_width],
    ]


_COLUMNS = [
    "camera", "state", "fps", "source", "frames", "tracks", "seen", "drops", "reconnects", "age", "error"
]  # fmt: skip
LIVE_ERROR_WIDTH = 60  # the live table is redrawn in place; the log lines and the summary show it all


def keep_up_warnings(statuses: list[CameraStatus]) -> list[str]:
    """One line per camera whose frames are analysed slower than they arrive."""
    return [problem for status in statuses if (problem := status.keep_up_problem()) is not None]


def status_table(statuses: list[CameraStatus], title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, expand=False)
    for column in _COLUMNS:
        table.add_column(column, justify="left" if column in {"camera", "state", "error"} else "right")
    for status in statuses:
        table.add_row(*_row(status, LIVE_ERROR_WIDTH))
    return table


def status_line(status: CameraStatus) -> str:
    cells = _row(status)
    return " ".join(f"{name}={value}" for name, value in zip(_COLUMNS, cells, strict=True) if value)


class StatusReporter:
    """Refreshes the status every ``interval_s`` until ``close()``; never blocks the pipeline."""

    def __init__(
        self,
        snapshot: Callable[[], list[CameraStatus]],
        interval_s: float = 1.0,
        warnings: Callable[[], list[str]] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._warnings = warnings or (lambda: [])
        self._interval_s = interval_s
        self._stop = threading.Event()
        # rich (about 0.04 s of imports) only for the live table: without a terminal the status is
        # logged, and a run's start-up does not wait for it.
        self._console: Console | None = None
        if sys.stderr.isatty():
            from rich.console import Console

            self._console = Console(stderr=True)
        self._live = self._console is not None and self._console.is_terminal
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._live:
            from rich.live import Live

            with Live(self._table(), console=self._console, refresh_per_second=4) as live:
                while not self._stop.wait(self._interval_s):
                    live.update(self._table())
            return
        interval = max(self._interval_s, LOG_INTERVAL_S)
        while not self._stop.wait(interval):
            self.log_once()

    def _table(self) -> Table:
        statuses = self._snapshot()
        table = status_table(statuses)
        warnings = keep_up_warnings(statuses) + self._warnings()
        if warnings:
            table.caption = "\n".join(warnings)
            table.caption_style = "bold red"
        return table

    def log_once(self) -> None:
        """Log one status line per camera, then a WARNING per degraded part and per camera that
        cannot keep up (every time, not once)."""
        statuses = self._snapshot()
        for status in statuses:
            log.info("status %s", status_line(status))
        for warning in keep_up_warnings(statuses) + self._warnings():
            log.warning("status %s", warning)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    """The end-of-run table, on standard output."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 132)
    table = Table(
        title=f"watchword: {summary.frames} frames in {summary.duration_s:.1f} s ({summary.stopped_by})"
    )
    for column in ["camera", "frames", "mean fps", "detections", "tracks", "drops", "reconnects"]:
        table.add_column(column, justify="left" if column == "camera" else "right")
    errors = []
    for status in summary.cameras:
        counters, source = status.counters, status.source
        table.add_row(
            counters.camera_id,
            str(counters.frames),
            f"{counters.mean_fps:.1f}",
            str(counters.detections),
            str(counters.tracks_seen),
            str(source.drops if source else 0),
            str(source.reconnects if source else 0),
        )
        if counters.error:
            errors.append(f"camera {counters.camera_id}: {redact_text(counters.error)}")
    console.print(table)
    for line in errors:  # whole, below the table: a reason cut at a column's width says too little
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    if summary.detect_batches:
        console.print(
            f"detector: {summary.detect_batches} batches, "
            f"{1000 * summary.detect_seconds / summary.detect_batches:.1f} ms per batch"
        )
