"""One agent per state: exclusive ``flock`` locks on every folder it writes, taken before it writes.

A second ``watchword run`` on the same queries, alerts and evidence would close the first one's
live alerts as interrupted and fight over the outbox. So the agent locks each folder that holds its
state: ``state_dir``, the folders of ``database`` and ``alerts.database``, ``alerts.evidence_dir``
and the search index's folder (when it keeps one). The lock is taken on the folder itself (a
directory file descriptor), not on a file beside it: it belongs to the folder's inode, so every path
that reaches the folder (another ``state_dir`` with paths into this one, a symlink, ``..``, a bind
mount) meets the same lock, and deleting a file in it cannot release it. Two agents therefore never
share a folder of state, even for different file names in it.

``watchword.lock`` in the state directory holds the owner's pid and is locked as well (an older
Watchword locks only that file, and where a filesystem cannot lock a folder the lock falls back to
a ``watchword.lock`` in it). A refusal names the holder's pid, from ``/proc/locks``. The kernel drops
every lock when the process ends, even on SIGKILL, so nothing stale blocks a restart. Commands that
only read or edit queries do not take the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger(__name__)

LOCK_NAME = "watchword.lock"
PROC_LOCKS = Path("/proc/locks")
# flock(2) on a folder's descriptor fails with these where the filesystem cannot lock folders (NFS
# emulates flock with byte-range locks, which need a file open for writing).
_NO_FOLDER_LOCKS = {errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP}


class StateLockError(RuntimeError):
    """A state folder is locked by another running agent; the message names its pid."""


@dataclass(frozen=True)
class StateFolder:
    """A folder the agent writes, and the config key that puts it there (for the refusal)."""

    path: Path
    role: str


def state_folders(config: AgentConfig) -> list[StateFolder]:
    """The folders ``config``'s agent writes state into: the state directory first."""
    folders = [
        StateFolder(config.state_dir, "state_dir"),
        StateFolder(config.database.parent, "the folder of database"),
        StateFolder(config.alerts.database.parent, "the folder of alerts.database"),
        StateFolder(config.alerts.evidence_dir, "alerts.evidence_dir"),
    ]
    if config.search.enabled and config.matching.embedder is not None:
        folders.append(StateFolder(config.search.index_directory(config.database), "search.directory"))
    return folders


def lock_agent_state(config: AgentConfig) -> StateLock:
    """Lock ``config``'s state folders, or raise :class:`StateLockError` naming the running agent."""
    return StateLock(state_folders(config), config.state_dir / LOCK_NAME).acquire()


def _proc_lock_holder(inode: int, device: int) -> int | None:
    """The pid holding a flock on (``device``, ``inode``), from ``/proc/locks``, or None."""
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    fallback = None
    with contextlib.suppress(OSError):
        for line in PROC_LOCKS.read_text(encoding="ascii", errors="replace").splitlines():
            fields = line.split()
            if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                continue  # a waiter, or a byte-range lock (SQLite's)
            pid, where = fields[4], fields[5]
            if where == wanted and pid.isdigit():
                return int(pid)
            # Some filesystems (btrfs subvolumes, overlays) report another device number than stat.
            if where.rsplit(":", 1)[-1] == str(inode) and pid.isdigit():
                fallback = int(pid)
    return fallback


def _holder(fd: int, folder: Path) -> str:
    """Who holds the lock on ``fd``: a pid from /proc/locks, else the pid in the folder's lock file."""
    with contextlib.suppress(OSError):
        status = os.fstat(fd)
        pid = _proc_lock_holder(status.st_ino, status.st_dev)
        if pid is not None:
            return f"pid {pid}"
    with contextlib.suppress(OSError, ValueError):
        text = (folder / LOCK_NAME).read_text(encoding="ascii").strip()
        if text:
            return f"pid {int(text)}"
    return "another process"


class StateLock:
    """Exclusive locks on state folders (and the pid file), held until :meth:`release` or process exit.

    Args:
        folders: the folders to lock (created when missing); one inode is locked once.
        pid_file: the file that holds the owner's pid (``<state_dir>/watchword.lock``), locked too.
    """

    def __init__(self, folders: list[StateFolder], pid_file: Path) -> None:
        self.folders = folders
        self.pid_file = pid_file
        self._fds: dict[tuple[int, int], int] = {}  # (device, inode) -> locked descriptor
        self._pid_fd: int | None = None

    @property
    def paths(self) -> list[Path]:
        """The folders locked (resolved), in order."""
        return [folder.path.resolve() for folder in self.folders]

    def acquire(self) -> StateLock:
        """Take every lock or none; raise :class:`StateLockError` naming the holder."""
        try:
            for folder in self.folders:
                folder.path.mkdir(parents=True, exist_ok=True)
                self._lock_folder(folder)
            self._pid_fd = self._lock(self.pid_file, StateFolder(self.pid_file.parent, "state_dir"))
            os.ftruncate(self._pid_fd, 0)
            os.pwrite(self._pid_fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except StateLockError:
            self.release()
            raise
        except OSError as exc:
            self.release()
            raise StateLockError(f"cannot lock the state folders: {exc}") from exc
        log.debug("state lock held: %s", ", ".join(map(str, self.paths)))
        return self

    def _lock_folder(self, folder: StateFolder) -> None:
        fd = os.open(folder.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._flock(fd, folder)
        except OSError as exc:
            if exc.errno not in _NO_FOLDER_LOCKS:
                raise
            log.debug("%s cannot be locked as a folder (%s); locking %s in it", folder.path, exc, LOCK_NAME)
            self._lock(folder.path / LOCK_NAME, folder)

    def _lock(self, path: Path, folder: StateFolder) -> int:
        """Lock the file ``path`` (created when missing); return the descriptor that holds the lock."""
        return self._flock(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), folder)

    def _flock(self, fd: int, folder: StateFolder) -> int:
        """Lock ``fd`` unless its inode is locked already; return the descriptor that holds the lock.

        ``fd`` is this method's from here on: kept when it holds the lock, else closed.
        """
        try:
            status = os.fstat(fd)
            key = (status.st_dev, status.st_ino)
            held = self._fds.get(key)
            if held is not None:  # two config paths name one folder, or the fallback file is the pid file
                os.close(fd)
                return held
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd, folder.path)
            os.close(fd)
            where = str(folder.path)
            with contextlib.suppress(OSError):
                resolved = folder.path.resolve()
                if resolved != folder.path.absolute():
                    where += f" (= {resolved})"
            raise StateLockError(
                f"{where}, {folder.role}, is in use by another running agent ({holder}); "
                "stop it first, or give this one its own state_dir and paths"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fds[key] = fd
        return fd

    def release(self) -> None:
        """Drop the locks (the pid file stays: deleting it would race with a starting agent)."""
        if self._pid_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._pid_fd, 0)
            self._pid_fd = None
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
