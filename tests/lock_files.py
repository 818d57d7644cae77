"""Reading the locks (``requirements/*.lock``) and setup.py's ranges, for the tests and the canary.

``python -m tests.lock_files latest requirements/dev.lock .venv-latest`` is the report that
``make test-latest`` prints: the packages whose newest release differs from the lock, and the tests
that failed there.
"""

from __future__ import annotations

import re
import runpy
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCK_DIR = REPO / "requirements"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")
_HASH = re.compile(r"^\s+--hash=sha256:([0-9a-f]{64})\s*\\?$")


@dataclass
class Pin:
    """One locked distribution: exact version, the sha256 hashes pip accepts, and its marker."""

    name: str  # canonical (PEP 503)
    version: str
    hashes: list[str]
    marker: str | None = None


def parse_lock(text: str) -> tuple[dict[str, Pin], list[str]]:
    """The pins of a lock, by canonical name, and the lines that are neither a pin, a hash nor a
    comment (an unpinned or editable requirement has no place in a lock)."""
    pins: dict[str, Pin] = {}
    stray: list[str] = []
    current: Pin | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        hashed = _HASH.match(line)
        if hashed and current is not None:
            current.hashes.append(hashed.group(1))
            continue
        pinned = _PIN.match(line)
        if pinned:
            name, version, marker = pinned.groups()
            current = pins[canonicalize_name(name)] = Pin(canonicalize_name(name), version, [], marker)
            continue
        stray.append(line.strip())
        current = None
    return pins, stray


def setup_arguments() -> dict[str, Any]:
    """The keyword arguments setup.py passes to ``setuptools.setup``: setup.py runs as it is, with
    ``setup`` replaced by a recorder, so it stays the one source of the ranges."""
    import setuptools

    captured: dict[str, Any] = {}
    with mock.patch.object(setuptools, "setup", lambda **kwargs: captured.update(kwargs)):
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    return captured


def declared_requirements(extras: Iterable[str]) -> list[tuple[Requirement, str | None]]:
    """setup.py's base requirements (extra None) and those of ``extras``."""
    arguments = setup_arguments()
    rows: list[tuple[Requirement, str | None]] = [
        (Requirement(r), None) for r in arguments["install_requires"]
    ]
    for extra in extras:
        rows.extend((Requirement(r), extra) for r in arguments["extras_require"][extra])
    return rows


def environment(python: str, machine: str) -> dict[str, str]:
    """Marker values of a Linux CPython ``python`` (e.g. ``3.12``) on ``machine`` (e.g. ``aarch64``)."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_version": "",
        "implementation_version": f"{python}.0",
        "extra": "",
    }


def lock_problems(
    pins: Mapping[str, Pin],
    requirements: Iterable[tuple[Requirement, str | None]],
    env: Mapping[str, str],
    installed_elsewhere: Mapping[str, str] | None = None,
) -> list[str]:
    """What is wrong with a lock against the requirements it must satisfy: a required package
    missing, a locked version outside its range, a pin without a hash. ``installed_elsewhere``: the
    packages a recipe installs by pinned version beside the lock (name -> version), checked the same.
    """
    problems: list[str] = []
    elsewhere = {canonicalize_name(k): v for k, v in (installed_elsewhere or {}).items()}
    for requirement, extra in requirements:
        marker = requirement.marker
        if marker is not None and not marker.evaluate({**env, "extra": extra or ""}):
            continue
        name = canonicalize_name(requirement.name)
        version = pins[name].version if name in pins else elsewhere.get(name)
        where = f" (extra {extra})" if extra else ""
        if version is None:
            problems.append(f"{requirement.name}{where} is required but not locked")
        elif not requirement.specifier.contains(Version(version), prereleases=True):
            problems.append(
                f"{requirement.name}{where} is locked at {version}, outside {requirement.specifier}"
            )
    for pin in pins.values():
        if not pin.hashes:
            problems.append(f"{pin.name}=={pin.version} has no hash")
        if pin.marker is not None and not Marker(pin.marker).evaluate(dict(env)):
            problems.append(f"{pin.name}=={pin.version} is locked for another platform ({pin.marker})")
    return problems


def input_requirements(path: Path) -> list[Requirement]:
    """The requirements of a ``requirements/*.in`` file, following its ``-r`` includes."""
    rows: list[Requirement] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            rows.extend(input_requirements(path.parent / line[3:].strip()))
        elif line:
            rows.append(Requirement(line))
    return rows


def _installed(venv: Path) -> dict[str, str]:
    """The distributions of another venv, read from its site-packages folder names."""
    found: dict[str, str] = {}
    for info in venv.glob("lib/python*/site-packages/*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        found[canonicalize_name(name)] = version
    return found


def latest_report(lock: Path, venv: Path) -> str:
    """What ``make test-latest`` found: versions that differ from ``lock``, and failing tests."""
    pins, _ = parse_lock(lock.read_text(encoding="utf-8"))
    installed = _installed(venv)
    installed.pop("watchword", None)  # the project itself
    rows = [
        (name, pin.version, installed.get(name, "-"))
        for name, pin in sorted(pins.items())
        if installed.get(name) != pin.version
    ]
    rows += [(name, "-", version) for name, version in sorted(installed.items()) if name not in pins]
    lines = [f"Newest releases the ranges allow, against {lock.relative_to(REPO)} (-: not installed):"]
    if rows:
        width = max(len(name) for name, _, _ in rows)
        lines.append(f"  {'package':<{width}}  {'locked':<16} newest")
        lines += [f"  {name:<{width}}  {locked:<16} {newest}" for name, locked, newest in rows]
    else:
        lines.append("  (no differences)")
    log = venv / "pytest.log"
    failures = (
        [
            line
            for line in log.read_text(errors="replace").splitlines()
            if re.match(r"(FAILED|ERROR) tests/", line)
        ]
        if log.is_file()
        else ["(no pytest log)"]
    )
    lines.append("Failing tests there:" if failures else "Failing tests there: none")
    lines += [f"  {line}" for line in failures]
    for tool, name in (("lint", "lint.log"), ("type check", "typecheck.log")):
        path = venv / name
        text = path.read_text(errors="replace") if path.is_file() else ""
        verdict = (
            "no log" if not text else ("fails" if re.search(r"error|would reformat", text) else "passes")
        )
        lines.append(f"{tool.capitalize()} there: {verdict} (see {path.relative_to(REPO)})")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "latest":
        sys.exit("usage: python -m tests.lock_files latest LOCK VENV")
    print(latest_report(REPO / sys.argv[2], REPO / sys.argv[3]))  # noqa: T201 - the canary's report
