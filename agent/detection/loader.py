"""Builds the detector on a thread while the rest of the agent starts.

Reading a detector's model, laying out its weights and warming it up take most of a start (about
0.6 s for the offline SSD on two cores, seconds for a TensorRT engine); they run in native code
that releases the GIL, so they overlap the agent's own start (state, queries, pose, sinks) instead
of following it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from agent.detection import Detector, build_detector
from agent.detection.config import DetectorConfig

log = logging.getLogger(__name__)


class DetectorLoader:
    """The configured detector, building from construction on a thread named ``detector-load``.

    :meth:`result` waits for it and returns it, or raises what the build raised
    (:class:`~agent.detection.DetectorError` for a bad model), so a bad detector still stops the
    start. :meth:`close` waits for a build in progress (native code cannot be interrupted, and a
    process must not exit while it runs) and closes the detector if it was built; the detector's
    own ``close`` may be called as well, it is idempotent.

    Args:
        config: the ``detector`` section.
        state_dir: passed to :func:`~agent.detection.build_detector` (converted models and start-up
            checks kept there).
    """

    def __init__(self, config: DetectorConfig, state_dir: Path | None = None) -> None:
        self.config = config
        self.state_dir = state_dir
        self._detector: Detector | None = None
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._build, name="detector-load", daemon=True)
        self._thread.start()

    def _build(self) -> None:
        try:
            self._detector = build_detector(self.config, self.state_dir)
        except Exception as exc:  # handed to the thread that asks for the detector
            self._error = exc

    def result(self) -> Detector:
        """The built detector (waits for the build); raises the build's error."""
        if self._thread.is_alive():  # the part of the build the rest of the start did not hide
            waiting = time.perf_counter()
            self._thread.join()
            log.debug("detector: waited %.2f s for its build", time.perf_counter() - waiting)
        if self._error is not None:
            raise self._error
        assert self._detector is not None
        return self._detector

    def close(self) -> None:
        """Wait for the build, then close the detector if there is one. Calling it twice is harmless."""
        self._thread.join()
        if self._detector is not None:
            self._detector.close()
