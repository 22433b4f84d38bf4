"""Typed errors of the data layer.

Every error names the file (or directory) at fault, says what was wrong and how to fix it, so a
batch job's log line is enough to act on. All derive from :class:`DataError` (a ``ValueError``).
"""

from __future__ import annotations

import os
from pathlib import Path

from lib.errors import ActionableError


class DataError(ActionableError):
    """Base class: ``path`` at fault (a Path), ``reason`` (what was wrong) and ``fix`` (what to do)."""

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, fix: str = "") -> None:
        super().__init__(path, reason, fix)
        self.path: Path | None = Path(path) if path is not None else None


# --- videos ---------------------------------------------------------------------------------
class VideoError(DataError):
    """A video file cannot give the frames asked of it."""


class VideoUnreadableError(VideoError):
    """Missing file, unknown container/codec, or a corrupt stream."""


class VideoEmptyError(VideoError):
    """The container opens but holds no decodable frame."""


class VideoTruncatedError(VideoError):
    """The container reports more frames than can actually be decoded."""


class VideoTooShortError(VideoError):
    """Shorter than one clip where a clip is required (single-clip sampling)."""


class VideoVariableFrameRateError(VideoUnreadableError):
    """Frames are not shown at ``i / fps``: a variable frame rate whose timestamps drift off the
    constant-rate grid, so sampling by frame index would mis-time the clips."""


class VideoFrameSizeError(VideoUnreadableError):
    """A valid video whose frame size decord cannot copy out (e.g. 8, 16, 24 or 48 px wide)."""


# --- datasets -------------------------------------------------------------------------------
class DatasetError(DataError):
    """A dataset tree or split file is absent or inconsistent."""


class DatasetNotFoundError(DatasetError):
    """The dataset root (or one of its two official folders) does not exist."""


class SplitFileError(DatasetError):
    """A split/class list line that does not parse or disagrees with classInd / folder names."""


class DownloadError(DataError):
    """A download or extraction failed (network, size/checksum mismatch, missing tool)."""
