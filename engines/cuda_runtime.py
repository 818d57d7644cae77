"""The few CUDA runtime calls the TensorRT backend needs: device facts, buffers, copies and a stream.

Through cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` in older releases), so the edge
runtime does not need torch; where cuda-python is missing and torch with CUDA is installed, through
torch instead. Nothing is imported until a :class:`CudaRuntime` is created.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import numpy as np

from engines.base import EngineError, EngineUnavailableError

logger = logging.getLogger(__name__)


def _import_cudart() -> Any | None:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6

        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # type: ignore[attr-defined,no-redef,unused-ignore]  # cuda-python < 12.6

        return cudart
    except ImportError:
        return None


class CudaRuntime:
    """Device memory, host<->device copies and one stream on GPU ``device_id``.

    Raises:
        EngineUnavailableError: neither cuda-python nor torch with CUDA is installed, or no GPU.
    """

    def __init__(self, device_id: int = 0) -> None:
        self.device_id = device_id
        self._current_in: set[int] = {threading.get_ident()}  # threads whose current device is ours
        self._cudart = _import_cudart()
        self._torch: Any = None
        self._torch_buffers: dict[int, Any] = {}
        if self._cudart is not None:
            self.backend = "cuda-python"
            try:
                self._check(self._cudart.cudaSetDevice(device_id), f"cudaSetDevice({device_id})")
            except EngineError as exc:
                raise EngineUnavailableError(f"no usable CUDA GPU {device_id} for TensorRT: {exc}") from exc
            self.stream: Any = self._check(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
            return
        torch: Any = None
        with contextlib.suppress(ImportError):
            import torch
        if torch is None or not torch.cuda.is_available():
            raise EngineUnavailableError(
                "the tensorrt engine needs cuda-python (pip install 'watchword[trt]') or torch with CUDA, "
                "and a CUDA GPU"
            )
        self.backend = "torch"
        self._torch = torch
        torch.cuda.set_device(device_id)
        self._torch_stream = torch.cuda.Stream(device=device_id)
        self.stream = self._torch_stream.cuda_stream

    def make_current(self) -> None:
        """Select this GPU in the calling thread, once per thread.

        The CUDA runtime's current device is per thread: an engine built on the detector's loader
        thread runs its inferences on the pipeline's thread, which would otherwise use GPU 0.
        """
        thread = threading.get_ident()
        if thread in self._current_in:
            return
        if self._cudart is not None:
            self._check(self._cudart.cudaSetDevice(self.device_id), f"cudaSetDevice({self.device_id})")
        else:
            self._torch.cuda.set_device(self.device_id)
        self._current_in.add(thread)

    def _check(self, result: Any, what: str) -> Any:
        """Unpack a cuda-python ``(error, *values)`` tuple, raising on an error."""
        cudart: Any = self._cudart
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != cudart.cudaError_t.cudaSuccess:
            raise EngineError(f"CUDA {what} failed: {error}")
        return values[0] if len(values) == 1 else (tuple(values) if values else None)

    def device_facts(self) -> tuple[str, str]:
        """(GPU name, compute capability ``"major.minor"``)."""
        if self._cudart is not None:
            props = self._check(
                self._cudart.cudaGetDeviceProperties(self.device_id), "cudaGetDeviceProperties"
            )
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"
        props = self._torch.cuda.get_device_properties(self.device_id)
        return str(props.name), f"{props.major}.{props.minor}"

    def malloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory; return its address."""
        nbytes = max(int(nbytes), 1)
        if self._cudart is not None:
            return int(self._check(self._cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))
        buffer = self._torch.empty(nbytes, dtype=self._torch.uint8, device=f"cuda:{self.device_id}")
        address = int(buffer.data_ptr())
        self._torch_buffers[address] = buffer
        return address

    def free(self, address: int) -> None:
        if self._cudart is not None:
            self._check(self._cudart.cudaFree(address), "cudaFree")
        else:
            self._torch_buffers.pop(address, None)

    def to_device(self, address: int, array: np.ndarray) -> None:
        """Copy a contiguous host array to ``address`` (asynchronously on :attr:`stream`)."""
        array = np.ascontiguousarray(array)
        if self._cudart is not None:
            kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(
                self._cudart.cudaMemcpyAsync(address, array, array.nbytes, kind, self.stream), "copy H2D"
            )
            return
        torch = self._torch
        target = self._torch_buffers[address][: array.nbytes]
        with torch.cuda.stream(self._torch_stream):
            target.copy_(torch.from_numpy(array.reshape(-1).view(np.uint8)), non_blocking=False)

    def to_host(self, array: np.ndarray, address: int) -> None:
        """Copy device memory at ``address`` into the contiguous host ``array`` (async on :attr:`stream`)."""
        if self._cudart is not None:
            kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(
                self._cudart.cudaMemcpyAsync(array, address, array.nbytes, kind, self.stream), "copy D2H"
            )
            return
        torch = self._torch
        source = self._torch_buffers[address][: array.nbytes]
        with torch.cuda.stream(self._torch_stream):
            torch.from_numpy(array.reshape(-1).view(np.uint8)).copy_(source)

    def synchronize(self) -> None:
        """Wait for everything queued on :attr:`stream`."""
        if self._cudart is not None:
            self._check(self._cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        else:
            self._torch_stream.synchronize()

    def close(self) -> None:
        if self._cudart is not None and self.stream is not None:
            self._check(self._cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
        self.stream = None
        self._torch_buffers.clear()
