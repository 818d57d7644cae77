"""Start-up check: every installed dependency is within the range Watchword declares.

``setup.py`` holds the ranges Watchword supports; ``requirements/*.lock`` pins what ``make setup``
and the images install. A machine that installed outside the lock (a ``pip install -U``, an image
built before the lock) can carry a release outside those ranges, say OpenCV 6, and the agent would
then fail somewhere deep in its start, or worse, run wrongly. The commands that start the agent
call :func:`unsupported_dependency` first and refuse with one line naming the package.

The ranges are read from the installed distribution's own metadata (``Requires-Dist``, what pip
installed from setup.py), so there is one source. Base requirements are always checked (a missing
one too); an extra's requirements only when every package of that extra is installed, so an unused
extra (``lmm`` with a stray ``transformers``) never stops the agent. The check costs a few
milliseconds: one metadata read and one directory listing per ``sys.path`` entry
(:func:`installed_versions`); ``packaging.markers`` is imported only for a marker other than
``extra == "..."``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata

DISTRIBUTION = "watchword"
LOCKED_INSTALL = "pip install --no-deps --require-hashes -r requirements/dev.lock"

# setuptools writes Requires-Dist as `name[extras] specifiers; marker`
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(?:;\s*(.+))?$")
_ONLY_EXTRA = re.compile(r"""^extra\s*==\s*['"]([^'"]+)['"]$""")


@dataclass(frozen=True)
class Requirement:
    """One ``Requires-Dist`` line: the package, its range and the extra it belongs to (None: base)."""

    name: str
    specifier: str  # e.g. ">=4.8,<6"; empty for any version
    extra: str | None

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"


@dataclass(frozen=True)
class Unsupported:
    """An installed (or, for a base requirement, missing) dependency outside its declared range."""

    requirement: Requirement
    found: str | None  # the installed version; None when a base requirement is not installed

    def message(self) -> str:
        """The one line ``watchword`` prints before it exits with status 2."""
        name = self.requirement.name
        if self.found is None:
            problem = f"{name} is not installed, but Watchword needs {self.requirement}"
        else:
            problem = f"{name} {self.found} is installed, but Watchword supports {self.requirement}"
        return f"watchword: {problem}; install the locked versions: {LOCKED_INSTALL}"


def parse_requirements(lines: Iterable[str]) -> list[Requirement]:
    """``Requires-Dist`` lines as :class:`Requirement` rows, one per extra that asks for the package;
    a line whose marker does not hold on this interpreter (``python_version < "3.11"``) is dropped."""
    from packaging.specifiers import SpecifierSet

    parsed: list[Requirement] = []
    for line in lines:
        match = _REQUIREMENT.match(line)
        if match is None:
            raise ValueError(f"cannot read the requirement {line!r}")
        name, _extras, specifier, marker = match.groups()
        # lower bounds first, as setup.py writes them: ">=4.8,<6"
        ordered = sorted(SpecifierSet(specifier), key=lambda s: (not s.operator.startswith(">"), str(s)))
        text = ",".join(str(s) for s in ordered)
        only_extra = _ONLY_EXTRA.match(marker.strip()) if marker else None
        if marker is None:
            parsed.append(Requirement(name, text, None))
        elif only_extra is not None:
            parsed.append(Requirement(name, text, only_extra.group(1)))
        else:
            parsed.extend(Requirement(name, text, extra) for extra in _extras_where_marker_holds(marker))
    return parsed


def _extras_where_marker_holds(marker: str) -> list[str | None]:
    """The extras (None: none, the base install) under which ``marker`` holds on this interpreter."""
    from packaging.markers import Marker

    compiled = Marker(marker)
    named = set(re.findall(r"""extra\s*==\s*['"]([^'"]+)['"]""", marker))
    return [extra for extra in (None, *sorted(named)) if compiled.evaluate({"extra": extra or ""})]


def find_unsupported(
    requirements: Iterable[Requirement], installed_version: Callable[[str], str | None]
) -> list[Unsupported]:
    """The requirements whose package is outside its range (or, for a base one, missing).

    Args:
        installed_version: the version installed of a package name, None when it is not installed.
    """
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    rows = list(requirements)
    found = {name: installed_version(name) for name in {row.name for row in rows}}
    incomplete_extras = {row.extra for row in rows if row.extra is not None and found[row.name] is None}
    unsupported: list[Unsupported] = []
    for row in rows:
        version = found[row.name]
        if row.extra is not None and row.extra in incomplete_extras:
            continue  # an extra that is not installed as a whole is not in use
        if version is None:
            unsupported.append(Unsupported(row, None))
            continue
        try:
            supported = SpecifierSet(row.specifier).contains(Version(version), prereleases=True)
        except InvalidVersion:
            continue  # a version PEP 440 cannot read (a distribution's own patch): no verdict
        if not supported:
            unsupported.append(Unsupported(row, version))
    return unsupported


def installed_versions(paths: Iterable[str] | None = None) -> dict[str, str]:
    """The version of every distribution on ``paths`` (default ``sys.path``), by normalised name;
    where two path entries hold one, the first wins, as for imports and ``importlib.metadata``.

    The name and version come from the ``name-version.dist-info`` directory's name (how installers
    write it), read from one listing per path entry: parsing every ``METADATA`` with
    ``importlib.metadata.version`` cost about 30 ms of the start; this about 1 ms. A directory
    without a version in its name (an in-place ``.egg-info``) has its metadata's header read.
    """
    import os
    import sys

    versions: dict[str, str] = {}
    for entry in sys.path if paths is None else paths:
        try:
            listing = list(os.scandir(entry or "."))
        except OSError:
            continue
        for item in listing:
            stem, dot, suffix = item.name.rpartition(".")
            if not dot or suffix not in ("dist-info", "egg-info"):
                continue
            name, _, version = stem.partition("-")
            key = normalise(name)
            if key in versions:
                continue
            if not version:
                version = _header_version(item.path, suffix) or ""
            if version:
                versions[key] = version
    return versions


def _header_version(path: str, suffix: str) -> str | None:
    """The ``Version:`` header of a metadata file (``PKG-INFO`` for an egg-info, a file or a folder)."""
    import os

    target = (
        path
        if not os.path.isdir(path)
        else os.path.join(path, "METADATA" if suffix == "dist-info" else "PKG-INFO")
    )
    try:
        with open(target, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    return None  # the headers end before the description
                if line.startswith("Version:"):
                    return line.partition(":")[2].strip()
    except OSError:
        return None
    return None


def normalise(name: str) -> str:
    """A distribution name as installers spell it in folder names (PEP 503, then ``-`` -> ``_``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def unsupported_dependency() -> str | None:
    """The one-line message about the first installed dependency outside Watchword's ranges, or None
    when all are within them (or Watchword runs from a source tree that was never installed, where
    no metadata declares any range)."""
    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return None
    versions = installed_versions()
    unsupported = find_unsupported(parse_requirements(declared), lambda name: versions.get(normalise(name)))
    return unsupported[0].message() if unsupported else None
