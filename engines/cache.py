"""The TensorRT engine cache: engines built on the target, keyed by everything that makes them valid.

A serialized TensorRT engine is only valid for the ONNX graph it came from, the TensorRT version and
the GPU (name and compute capability) that built it, its precision and its optimisation profile. The
cache key holds all of those; the engine file is named after the key, and its metadata lives in a
sidecar JSON next to it (never in a header inside the engine file). Nothing here imports TensorRT, so
the key, the sidecar and the refusal logic are testable without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engines.base import EngineMismatchError
from engines.manifest import sha256_file

logger = logging.getLogger(__name__)

SIDECAR_FORMAT = 1
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ProfileShape:
    """The shape range of one dynamic input in a TensorRT optimisation profile."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ValueError(f"profile of {self.name}: min/opt/max have different ranks")
        if any(not (lo <= mid <= hi) for lo, mid, hi in zip(self.min, self.opt, self.max, strict=True)):
            raise ValueError(
                f"profile of {self.name}: need min <= opt <= max, got {self.min} {self.opt} {self.max}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileShape:
        return cls(str(data["name"]), tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))


@dataclass(frozen=True)
class EngineCacheKey:
    """Everything a TensorRT engine's validity depends on.

    Attributes:
        onnx_sha256: hash of the ONNX file the engine was built from.
        tensorrt_version: ``tensorrt.__version__`` of the builder.
        gpu_name: the device name (``"NVIDIA GeForce RTX 4090"``, ``"Orin"``).
        compute_capability: ``"major.minor"``, e.g. ``"8.9"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        profile: the optimisation profile, one range per dynamic input.
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: tuple[ProfileShape, ...]

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "profile": [shape.to_dict() for shape in self.profile],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineCacheKey:
        return cls(
            onnx_sha256=str(data["onnx_sha256"]),
            tensorrt_version=str(data["tensorrt_version"]),
            gpu_name=str(data["gpu_name"]),
            compute_capability=str(data["compute_capability"]),
            precision=str(data["precision"]),
            profile=tuple(ProfileShape.from_dict(p) for p in data["profile"]),
        )

    @property
    def digest(self) -> str:
        """Hex sha256 of the canonical JSON of every field."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def file_stem(self, model_name: str) -> str:
        """``{model}-{precision}-sm{cc}-trt{version}-{digest16}``: readable, and unique per key."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name) or "model"
        cc = self.compute_capability.replace(".", "")
        return f"{safe}-{self.precision}-sm{cc}-trt{self.tensorrt_version}-{self.digest[:16]}"

    def differences(self, other: EngineCacheKey) -> list[str]:
        """Human-readable reasons why an engine built for ``other`` is not valid for ``self``."""
        reasons = []
        if other.onnx_sha256 != self.onnx_sha256:
            reasons.append(f"ONNX sha256 {other.onnx_sha256[:12]}... != {self.onnx_sha256[:12]}...")
        if other.tensorrt_version != self.tensorrt_version:
            reasons.append(f"TensorRT {other.tensorrt_version} != {self.tensorrt_version}")
        if other.gpu_name != self.gpu_name:
            reasons.append(f"GPU {other.gpu_name!r} != {self.gpu_name!r}")
        if other.compute_capability != self.compute_capability:
            reasons.append(f"compute capability {other.compute_capability} != {self.compute_capability}")
        if other.precision != self.precision:
            reasons.append(f"precision {other.precision} != {self.precision}")
        if other.profile != self.profile:
            reasons.append("optimisation profile differs")
        return reasons


def sidecar_path(engine_path: Path) -> Path:
    """The sidecar JSON of an engine file: ``x.engine`` -> ``x.engine.json``."""
    return engine_path.with_name(engine_path.name + ".json")


def read_sidecar(engine_path: Path) -> dict[str, Any]:
    """Parse the sidecar of ``engine_path``; raise :class:`EngineMismatchError` when absent or unreadable."""
    path = sidecar_path(engine_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineMismatchError(
            f"{engine_path} has no sidecar {path.name}: its GPU, TensorRT version and source are unknown, "
            "so it cannot be trusted; build it from the ONNX file on this machine instead"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineMismatchError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or "facts" not in data:
        raise EngineMismatchError(f"{path} is not a format-{SIDECAR_FORMAT} engine sidecar")
    return data


def check_engine_file(engine_path: Path, expected: EngineCacheKey, *, compare_profile: bool = True) -> None:
    """Refuse an engine file whose sidecar records other facts than ``expected`` or whose bytes changed.

    Raises:
        EngineMismatchError: naming each difference (GPU, compute capability, TensorRT version,
            precision, ONNX hash, profile) or a modified engine file.
    """
    data = read_sidecar(engine_path)
    try:
        recorded = EngineCacheKey.from_dict(data["facts"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineMismatchError(f"{sidecar_path(engine_path)}: malformed facts: {exc}") from exc
    if not compare_profile:
        recorded = replace(recorded, profile=expected.profile)
    reasons = expected.differences(recorded)
    if reasons:
        raise EngineMismatchError(
            f"{engine_path.name} was built for another target ({'; '.join(reasons)}; recorded first, "
            "this machine second)"
        )
    engine_sha = str(data.get("engine", {}).get("sha256", ""))
    if engine_sha and sha256_file(engine_path) != engine_sha:
        raise EngineMismatchError(
            f"{engine_path.name} does not match the sha256 in its sidecar: modified file"
        )


class EngineCache:
    """A directory of ``{stem}.engine`` files with ``{stem}.engine.json`` sidecars."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def engine_path(self, key: EngineCacheKey, model_name: str) -> Path:
        return self.directory / f"{key.file_stem(model_name)}.engine"

    def lookup(self, key: EngineCacheKey, model_name: str) -> Path | None:
        """The cached engine for ``key``, or None (a miss, with the reason logged)."""
        path = self.engine_path(key, model_name)
        if not path.is_file():
            stale = self.entries_for(key.onnx_sha256)
            if stale:
                reasons = {"; ".join(key.differences(other)) or "same facts" for other in stale}
                logger.info(
                    "engine cache miss for %s: cached builds differ (%s)", path.name, " | ".join(reasons)
                )
            else:
                logger.info("engine cache miss for %s: never built here", path.name)
            return None
        try:
            check_engine_file(path, key)
        except EngineMismatchError as exc:
            logger.warning("engine cache entry %s is unusable, rebuilding: %s", path.name, exc)
            return None
        return path

    def entries_for(self, onnx_sha256: str) -> list[EngineCacheKey]:
        """Keys of every cached engine built from the ONNX file with this hash."""
        keys: list[EngineCacheKey] = []
        if not self.directory.is_dir():
            return keys
        for sidecar in sorted(self.directory.glob("*.engine.json")):
            try:
                facts = json.loads(sidecar.read_text(encoding="utf-8"))["facts"]
                if facts.get("onnx_sha256") == onnx_sha256:
                    keys.append(EngineCacheKey.from_dict(facts))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return keys

    def store(
        self,
        key: EngineCacheKey,
        model_name: str,
        engine_bytes: bytes,
        *,
        onnx_path: Path,
        build_s: float,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the engine and then its sidecar (each atomically); return the engine path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.engine_path(key, model_name)
        temporary = path.with_name(path.name + f".tmp{os.getpid()}")
        temporary.write_bytes(engine_bytes)
        os.replace(temporary, path)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "key": key.digest,
            "facts": key.to_dict(),
            "engine": {"file": path.name, "bytes": len(engine_bytes), "sha256": sha256_file(path)},
            "onnx": {"path": str(Path(onnx_path).resolve()), "sha256": key.onnx_sha256},
            "build_s": round(build_s, 3),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **dict(extra or {}),
        }
        side = sidecar_path(path)
        temporary = side.with_name(side.name + f".tmp{os.getpid()}")
        temporary.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, side)
        return path


def batch_profile(
    inputs: Sequence[tuple[str, Sequence[int | str]]], min_batch: int, opt_batch: int, max_batch: int
) -> tuple[ProfileShape, ...]:
    """A profile that varies axis 0 of each input from ``min_batch`` to ``max_batch``.

    Args:
        inputs: (name, shape) of each input; axis 0 is the batch axis, every other axis must be fixed.
    """
    shapes = []
    for name, shape in inputs:
        rest = tuple(shape[1:])
        if any(not isinstance(dim, int) or dim < 0 for dim in rest):
            raise ValueError(f"input {name} has dynamic axes besides the batch: {tuple(shape)}")
        fixed = tuple(int(dim) for dim in rest)
        shapes.append(ProfileShape(name, (min_batch, *fixed), (opt_batch, *fixed), (max_batch, *fixed)))
    return tuple(shapes)
