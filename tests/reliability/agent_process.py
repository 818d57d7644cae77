"""``watchword run`` in a child process, for the reliability tests that need a real second agent,
a real signal or the real log output."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def watchword(*args: str, cwd: Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=cwd,
        env=env(),
    )


class AgentProcess:
    """``watchword run CONFIG`` with stdout and stderr going to files in ``cwd``.

    ``file_limit`` sets the child's soft and hard ``RLIMIT_NOFILE`` (open files) before it starts.
    """

    def __init__(self, config: Path, cwd: Path, *args: str, file_limit: int | None = None) -> None:
        self.log_path = cwd / f"agent-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")

        def limit_files() -> None:
            if file_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", str(config), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env=env(),
            preexec_fn=limit_files if file_limit is not None else None,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"the agent exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {text!r} in the agent's output after {timeout_s} s:\n{self.output()}"
                )
            time.sleep(0.1)

    def terminate(self, timeout_s: float = 30) -> tuple[int, float]:
        """SIGTERM; return the exit status and the seconds from the signal to the exit."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self._log.close()
        return code, time.monotonic() - sent

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


def digest(folder: Path, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """sha256 of every file under ``folder`` (names in ``skip`` left out)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in skip
    }


_HOLD_LOCK = """
import sys
from agent.config import load_config
from agent.state_lock import lock_agent_state
lock = lock_agent_state(load_config(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()
"""


class LockHolder:
    """A second process that takes the state lock of ``config`` (as ``watchword run`` does) and holds
    it until :meth:`close`; a test that starts no pipeline meets a real lock held by another pid."""

    def __init__(self, config: Path, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env(),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "locked":
            self.close()
            raise AssertionError(f"the lock holder did not lock: {line}{self.process.communicate()[1]}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.communicate(input="", timeout=30)  # end of stdin: it exits, the kernel unlocks
        self.process.wait(10)

    def __enter__(self) -> LockHolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
