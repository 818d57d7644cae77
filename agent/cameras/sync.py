"""Applies camera changes from the state database to the running pipeline (polled, ~5 times a second)."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from agent.cameras.store import CameraStore
from agent.sources.config import CameraConfig

log = logging.getLogger(__name__)


def _source_part(camera: CameraConfig) -> CameraConfig:
    """What the source depends on: everything but the zones."""
    return camera.model_copy(update={"zones": []})


class CameraHost(Protocol):
    """What the sync needs of the pipeline."""

    def add_camera(self, camera: CameraConfig) -> None: ...

    def remove_camera(self, camera_id: str) -> None: ...


class CameraSync:
    """Watches the store's revision and opens, replaces or stops the cameras that changed.

    Args:
        store: the camera table.
        host: the running pipeline.
        running: the cameras the pipeline was started with (enabled ones).
        interval_s: how often the revision is checked, seconds.
        listed: the ids the YAML lists: a run-time change to one lasts until the next start, which
            applies the YAML's entry again (logged with the change).
    """

    def __init__(
        self,
        store: CameraStore,
        host: CameraHost,
        running: list[CameraConfig],
        interval_s: float = 0.2,
        listed: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.host = host
        self.interval_s = interval_s
        self.listed = listed
        self._running = {camera.id: camera for camera in running}
        self._revision = store.revision()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:
                log.exception("camera sync failed; retrying")

    def poll(self) -> None:
        """Apply what changed since the last poll (also callable directly, e.g. from tests)."""
        revision = self.store.revision()
        if revision == self._revision:
            return
        self._revision = revision
        wanted = {camera.id: camera for camera in self.store.list_cameras() if camera.enabled}
        for camera_id in list(self._running):
            if camera_id not in wanted:
                log.info("camera %s: stopped%s", camera_id, self._until_restart(camera_id))
                self.host.remove_camera(camera_id)
                del self._running[camera_id]
        for camera_id, camera in wanted.items():
            running = self._running.get(camera_id)
            if running is not None and _source_part(running) == _source_part(camera):
                self._running[camera_id] = camera  # zones only: the producers read them, no restart
                continue
            if running != camera:
                change = "changed" if camera_id in self._running else "added"
                log.info("camera %s: %s%s", camera_id, change, self._until_restart(camera_id))
                self.host.add_camera(camera)
                self._running[camera_id] = camera

    def _until_restart(self, camera_id: str) -> str:
        if camera_id not in self.listed:
            return ""
        return " (the config lists it: its entry there applies again at the next start)"
