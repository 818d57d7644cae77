"""Fixtures for the tracker tests: the first 150 frames of the sample video, offline."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.offline import no_network_or_pip, read_frames

__all__ = ["no_network_or_pip"]  # the autouse guard applies to every test in this folder


@pytest.fixture(scope="session")
def sample_frames() -> list[np.ndarray]:
    return read_frames(150)
