"""PyTorch eager backend: the reference the exports are validated against, and a fallback runtime.

It runs either an in-memory ``torch.nn.Module`` (:meth:`TorchEngine.from_module`, what the exporter's
parity checks use) or a ``torch.export`` program saved as ``.pt2`` with its spec stored inside.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine, EngineError, EngineSpec, EngineUnavailableError, register_engine

logger = logging.getLogger(__name__)

SPEC_FILE = "watchword_spec.json"
"""Name of the extra file inside a ``.pt2`` program that holds its :class:`EngineSpec` as JSON."""


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the torch engine needs PyTorch: pip install 'watchword[export]' ({exc})"
        ) from exc
    return torch


def save_program(program: Any, spec: EngineSpec, path: str | Path) -> Path:
    """Save a ``torch.export`` program with ``spec`` embedded, for ``create_engine("torch", path)``."""
    torch = _import_torch()
    path = Path(path)
    torch.export.save(program, str(path), extra_files={SPEC_FILE: json.dumps(spec.to_dict())})
    return path


@register_engine("torch")
class TorchEngine(Engine):
    """Runs a PyTorch module eagerly under ``torch.inference_mode``.

    Args:
        path: a ``.pt2`` file written by :func:`save_program` (ignored when ``module`` is given).
        module: an in-memory module whose ``forward`` takes the spec's inputs in spec order and
            returns a tensor, a tuple of tensors (in output order) or a dict keyed by output name.
        spec: the module's spec (required with ``module``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        warmup: run one inference at construction.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        module: Any = None,
        spec: EngineSpec | None = None,
        device: str = "cpu",
        warmup: bool = True,
    ) -> None:
        torch = _import_torch()
        started = time.perf_counter()
        if module is None:
            if path is None:
                raise EngineError("the torch engine needs a .pt2 path or a module")
            path = Path(path)
            extra = {SPEC_FILE: ""}
            try:
                program = torch.export.load(str(path), extra_files=extra)
            except Exception as exc:  # torch raises many types for a bad archive
                raise EngineError(f"cannot load torch program {path}: {type(exc).__name__}: {exc}") from exc
            if not extra[SPEC_FILE]:
                raise EngineError(
                    f"{path} has no {SPEC_FILE}; save it with engines.torch_engine.save_program"
                )
            spec = EngineSpec.from_dict(json.loads(extra[SPEC_FILE]))
            module = program.module()
            name = path.name
        else:
            if spec is None:
                raise EngineError("TorchEngine(module=...) needs its spec")
            name = type(module).__name__
            if hasattr(module, "eval"):
                module.eval()
        try:
            self._device = torch.device(device)
            module = module.to(self._device)
        except (RuntimeError, AssertionError) as exc:
            raise EngineUnavailableError(f"torch device {device!r} is not usable: {exc}") from exc
        super().__init__(f"torch({name}, {device})", spec)
        self._torch = torch
        self._module = module
        self.timings.load_s = time.perf_counter() - started
        if warmup:
            self._warm_up()

    @classmethod
    def from_module(
        cls, module: Any, spec: EngineSpec, device: str = "cpu", warmup: bool = False
    ) -> TorchEngine:
        """Wrap an in-memory module (the exporter's reference)."""
        return cls(module=module, spec=spec, device=device, warmup=warmup)

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        # Positional, in spec order: exported programs take no keywords.
        tensors = [torch.from_numpy(inputs[name]).to(self._device) for name in self.spec.input_names]
        with torch.inference_mode():
            result = self._module(*tensors)
        names = self.spec.output_names
        if isinstance(result, Mapping):
            values = [result[name] for name in names]
        elif isinstance(result, tuple | list):
            values = list(result)[: len(names)]
        else:
            values = [result]
        if len(values) != len(names):
            raise EngineError(f"{self.name} returned {len(values)} outputs, the spec has {len(names)}")
        arrays = {}
        for name, value in zip(names, values, strict=True):
            value = value.detach().cpu()
            arrays[name] = (
                value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
            ).numpy()
        return arrays

    def _release(self) -> None:
        self._module = None
