"""Loading GStreamer through PyGObject safely in a process that also runs C++ extensions.

GStreamer's libraries pull in ``libunwind``, and PyGObject opens them into the global symbol scope.
From then on, a C++ extension loaded later (onnx, onnxruntime, torch's ONNX exporter) may resolve
``_Unwind_Resume`` to libunwind's instead of libgcc's, and the first exception it throws aborts the
whole process instead of becoming a Python exception. Loading ``libgcc_s`` into the global scope
first keeps the GCC unwinder in front. Call :func:`protect_unwinder` before anything of GStreamer
is imported from ``gi.repository``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading

_lock = threading.Lock()
_done = False


def protect_unwinder() -> None:
    """Load ``libgcc_s`` with RTLD_GLOBAL once per process (a no-op where it does not exist)."""
    global _done
    with _lock:
        if _done:
            return
        name = ctypes.util.find_library("gcc_s") or "libgcc_s.so.1"
        with contextlib.suppress(OSError):  # not a GCC-built system: nothing to protect against
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        _done = True
