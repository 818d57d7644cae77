"""One agent per state directory: an exclusive ``flock`` taken before anything is written.

A second ``watchword run`` on the same queries, alerts and evidence would close the first one's
live alerts as interrupted and fight over the outbox. The lock file ``watchword.lock`` in the state
directory (and beside any of the three paths configured outside it) holds the owner's pid, so the
refusal can name it. The kernel drops the lock when the process ends, even on SIGKILL, so a stale
file never blocks a restart. Commands that only read or edit queries do not take the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger(__name__)

LOCK_NAME = "watchword.lock"


class StateLockError(RuntimeError):
    """The state directory is locked by another running agent; the message names its pid."""


def lock_paths(state_dir: Path, *state_paths: Path) -> list[Path]:
    """The lock files guarding ``state_dir`` and any state path configured outside it."""
    root = state_dir.absolute()
    locks = [root / LOCK_NAME]
    for path in state_paths:
        absolute = path.absolute()
        if absolute == root or root in absolute.parents:
            continue
        lock = absolute.parent / f".{absolute.name}.{LOCK_NAME}"
        if lock not in locks:
            locks.append(lock)
    return locks


def lock_agent_state(config: AgentConfig) -> StateLock:
    """Take the locks of ``config``'s state directory and paths, or raise :class:`StateLockError`."""
    paths = lock_paths(config.state_dir, config.database, config.alerts.database, config.alerts.evidence_dir)
    return StateLock(paths).acquire()


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = path.read_text(encoding="ascii").strip()
        if text:
            return f"pid {int(text)}"
    return "another process"


class StateLock:
    """Exclusive locks on the given lock files, held until :meth:`release` or process exit."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._fds: list[int] = []

    def acquire(self) -> StateLock:
        """Take every lock or none; raise :class:`StateLockError` naming the holder."""
        try:
            for path in self.paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise StateLockError(
                        f"{path.parent} is in use by another running agent ({_holder(path)}, lock file "
                        f"{path}); stop it first, or give this one another state_dir"
                    ) from None
                self._fds.append(fd)
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError as exc:
            self.release()
            raise StateLockError(f"cannot lock the state directory: {exc}") from exc
        except StateLockError:
            self.release()
            raise
        log.debug("state lock held: %s", ", ".join(map(str, self.paths)))
        return self

    def release(self) -> None:
        """Drop the locks (the files stay: deleting them would race with a starting agent)."""
        fds, self._fds = self._fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
