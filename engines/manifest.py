"""``manifest.json``: what an export directory holds, where it came from and how it was validated.

An exported model directory is used only through its manifest. :func:`verify_manifest` refuses a
directory whose files are missing or differ from the sha256 recorded at export time, naming each bad
file; the exporter writes the manifest last, and only after the parity check passed, so a directory
without one is an unfinished or failed export.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_CHUNK_BYTES = 1 << 20


class ManifestError(RuntimeError):
    """A missing, unreadable or inconsistent manifest, or files that do not match it."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileRecord:
    """One file of an export: its path relative to the export directory, size in bytes and sha256."""

    path: str
    bytes: int
    sha256: str

    @classmethod
    def of(cls, directory: Path, relative: str) -> FileRecord:
        file = directory / relative
        return cls(path=relative, bytes=file.stat().st_size, sha256=sha256_file(file))


@dataclass
class Manifest:
    """The contents of ``manifest.json``.

    Attributes:
        kind: what was exported (``"clip"``, ``"siglip"``, ``"yolo"``).
        source: the source model: ``model`` (path or hub id), ``revision`` and, for weight files, ``sha256``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        opset: the ONNX opset of the graphs.
        graphs: per graph name (``"vision"``, ``"text"``, ``"detector"``): its file, precision and tensors.
        parity: the parity checks that passed, one dict per graph and backend.
        versions: library versions used for the export.
        files: every file of the export except the manifest itself.
        created: UTC creation time, ISO 8601.
        extra: anything else the exporter records (engine builds, calibration source).
    """

    kind: str
    source: dict[str, Any]
    precision: str
    opset: int
    graphs: dict[str, dict[str, Any]]
    parity: list[dict[str, Any]]
    versions: dict[str, str]
    files: dict[str, FileRecord] = field(default_factory=dict)
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "kind": self.kind,
            "created": self.created,
            "source": self.source,
            "precision": self.precision,
            "opset": self.opset,
            "graphs": self.graphs,
            "parity": self.parity,
            "versions": self.versions,
            "files": {
                name: {"bytes": record.bytes, "sha256": record.sha256}
                for name, record in sorted(self.files.items())
            },
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        try:
            files = {
                str(name): FileRecord(path=str(name), bytes=int(entry["bytes"]), sha256=str(entry["sha256"]))
                for name, entry in dict(data["files"]).items()
            }
            return cls(
                format=int(data["format"]),
                kind=str(data["kind"]),
                created=str(data.get("created", "")),
                source=dict(data["source"]),
                precision=str(data["precision"]),
                opset=int(data["opset"]),
                graphs={str(k): dict(v) for k, v in dict(data["graphs"]).items()},
                parity=[dict(p) for p in data.get("parity", [])],
                versions={str(k): str(v) for k, v in dict(data.get("versions", {})).items()},
                files=files,
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"malformed manifest: {type(exc).__name__}: {exc}") from exc

    def graph_file(self, graph: str) -> str:
        """The file of ``graph`` relative to the export directory."""
        try:
            return str(self.graphs[graph]["file"])
        except KeyError:
            raise ManifestError(
                f"the manifest has no {graph!r} graph (it has {sorted(self.graphs)})"
            ) from None

    def summary(self) -> str:
        """One line for ``watchword models list``."""
        cosines = [p["min_cosine"] for p in self.parity if "min_cosine" in p]
        parity = (
            f", parity min cosine {min(cosines):.5f}" if cosines else (", parity ok" if self.parity else "")
        )
        size = sum(record.bytes for record in self.files.values())
        return (
            f"{self.kind} {self.precision} opset {self.opset}, {len(self.files)} files "
            f"{size / 1e6:.1f} MB{parity}, from {self.source.get('model', '?')} ({self.created or 'undated'})"
        )


def _export_files(directory: Path) -> list[str]:
    """Files under ``directory`` (relative, POSIX), skipping the manifest and hidden entries."""
    names: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or (Path(root) == directory and name == MANIFEST_NAME):
                continue
            names.append((Path(root) / name).relative_to(directory).as_posix())
    return names


def write_manifest(directory: str | Path, manifest: Manifest, files: Iterable[str] | None = None) -> Path:
    """Hash the export's files into ``manifest`` and write ``manifest.json`` atomically.

    Args:
        directory: the export directory.
        manifest: everything but ``files`` and ``created``, which are filled in here.
        files: relative paths to list; by default every non-hidden file in the directory.

    Returns:
        The manifest's path.
    """
    directory = Path(directory)
    names = sorted(files) if files is not None else _export_files(directory)
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise ManifestError(f"cannot write the manifest of {directory}: missing {missing}")
    manifest.files = {name: FileRecord.of(directory, name) for name in names}
    manifest.created = manifest.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = directory / MANIFEST_NAME
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_manifest(directory: str | Path) -> Manifest:
    """Parse ``manifest.json`` without checking the files (see :func:`verify_manifest`)."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ManifestError(f"model directory not found: {directory}")
    if not path.is_file():
        raise ManifestError(
            f"{directory} has no {MANIFEST_NAME}: it is not an export, or its export did not finish "
            "(the manifest is written only after the parity check passes)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object")
    if data.get("format") != FORMAT_VERSION:
        raise ManifestError(
            f"{path}: manifest format {data.get('format')!r}, this version reads {FORMAT_VERSION}"
        )
    try:
        return Manifest.from_dict(data)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from exc


STAMP_NAME = ".verified.json"
"""Hidden beside the manifest: each file's size, modification time and sha256 when last hashed."""
RACY_S = 2.0
"""A stamp vouches only for files modified this long before it was written (a write within the
file system's timestamp granularity of the stamp could leave the time unchanged; git's racy rule)."""


def _stamp_vouches(directory: Path, manifest: Manifest) -> bool:
    """Whether the stamp says every listed file is unchanged since it was hashed to the manifest's sha256."""
    try:
        stamp = json.loads((directory / STAMP_NAME).read_text(encoding="utf-8"))
        written = int(stamp["written_ns"])
        for name, record in manifest.files.items():
            size, mtime_ns, sha = stamp["files"][name]
            stat = (directory / name).stat()
            if (stat.st_size, stat.st_mtime_ns, record.sha256) != (size, mtime_ns, sha) or (
                written - mtime_ns < RACY_S * 1e9
            ):
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _write_stamp(directory: Path, manifest: Manifest) -> None:
    files = {}
    for name, record in manifest.files.items():
        stat = (directory / name).stat()
        files[name] = [stat.st_size, stat.st_mtime_ns, record.sha256]
    path = directory / STAMP_NAME
    temporary = path.with_name(f"{STAMP_NAME}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps({"written_ns": time.time_ns(), "files": files}), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:  # a read-only export: hash again next time
        temporary.unlink(missing_ok=True)


def verify_manifest(
    directory: str | Path, *, check_hashes: bool = True, trust_stamp: bool = False
) -> Manifest:
    """Read the manifest and check that every file it lists is present and unchanged.

    Args:
        directory: the export directory.
        check_hashes: hash every file (the default); False checks presence and sizes only.
        trust_stamp: skip hashing files whose size and modification time are those recorded when
            they were last hashed against this manifest (:data:`STAMP_NAME`, written here after a
            full check): a start need not read a 70 MB graph to know it is unchanged.

    Returns:
        The verified manifest.

    Raises:
        ManifestError: the manifest is missing or malformed, or a listed file is missing or differs
            from its recorded size or sha256; the message names every bad file.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    stamped = trust_stamp and check_hashes and _stamp_vouches(directory, manifest)
    if stamped:
        check_hashes = False
    problems: list[str] = []
    for name, record in sorted(manifest.files.items()):
        file = directory / name
        if not file.is_file():
            problems.append(f"{name} is missing")
            continue
        size = file.stat().st_size
        if size != record.bytes:
            problems.append(f"{name} has {size} bytes, the manifest records {record.bytes}")
        elif check_hashes and (digest := sha256_file(file)) != record.sha256:
            problems.append(
                f"{name} has sha256 {digest[:16]}..., the manifest records {record.sha256[:16]}..."
            )
    for graph, entry in manifest.graphs.items():
        if str(entry.get("file")) not in manifest.files:
            problems.append(f"graph {graph!r} uses {entry.get('file')!r}, which the manifest does not list")
    if problems:
        raise ManifestError(
            f"refusing {directory}: its files do not match {MANIFEST_NAME} (modified, truncated or "
            "incomplete copy; export again or copy the directory again):\n  " + "\n  ".join(problems)
        )
    unlisted = sorted(set(_export_files(directory)) - set(manifest.files))
    if unlisted:
        logger.warning("%s: files not in the manifest are ignored: %s", directory, ", ".join(unlisted))
    if trust_stamp and check_hashes and not stamped:
        _write_stamp(directory, manifest)
    return manifest


def manifest_digest(directory: str | Path) -> str:
    """Hex sha256 of ``manifest.json``: one identifier for the whole export (its files' hashes included)."""
    return sha256_file(Path(directory) / MANIFEST_NAME)
