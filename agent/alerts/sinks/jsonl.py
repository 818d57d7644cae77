"""JSONL file sink: one line per alert event, flushed and (by default) fsynced before it counts."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from agent.alerts.sinks.base import Sink, SinkError, encode_payload


class JsonlSink(Sink):
    """Appends each alert event as one JSON line to ``path``.

    With ``fsync`` the line is on disk (``os.fsync``) before ``send`` returns, so an acknowledged
    event survives a power loss.
    """

    def __init__(self, name: str, path: Path, *, fsync: bool = True) -> None:
        super().__init__(name)
        self.path = Path(path)
        self.fsync = fsync
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._file is None:
                self._open()

    def _open(self) -> BinaryIO:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc}") from exc
        return self._file

    def send(self, payload: dict[str, Any]) -> None:
        line = encode_payload(payload) + b"\n"
        with self._lock:
            file = self._file if self._file is not None else self._open()
            size = None
            try:
                size = os.fstat(file.fileno()).st_size
                file.write(line)
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
            except OSError as exc:
                # Cut off a partial line so the retry leaves the file valid JSONL, and reopen.
                self._file = None
                with contextlib.suppress(OSError):
                    file.close()
                if size is not None:
                    with contextlib.suppress(OSError):
                        os.truncate(self.path, size)
                raise SinkError(f"cannot write {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
