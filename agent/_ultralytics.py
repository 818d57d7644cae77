"""Kept for modules that import :func:`import_ultralytics` from here; it lives in ``engines``."""

from engines.ultralytics_import import OFFLINE_ENVIRONMENT, import_ultralytics

__all__ = ["OFFLINE_ENVIRONMENT", "import_ultralytics"]
