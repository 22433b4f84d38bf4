"""Checks of a video that decord does not make itself: frame-rate drift and frame sizes it cannot copy.

:class:`~lib.data.video.VideoReader` samples by time on the assumption that frame ``i`` is shown
at ``i / fps``. Two kinds of valid files break what decord returns without a clear error:

* **Variable frame rate.** Packet timestamps whose steps stay under the gap tolerance (so no
  frame slot is skipped) can still drift off the constant-rate grid: a phone video at an average
  26.24 fps shows frame 60 at 2.00 s where ``60 / fps`` says 2.29 s. When some frame lies more
  than :data:`VFR_TOLERANCE` frame periods from its slot, the nearest frame by index is no longer
  the frame shown at that time: :func:`frame_rate_error` turns that into a
  :class:`~lib.data.errors.VideoVariableFrameRateError` naming the frame and the drift.
* **Frame sizes decord cannot copy out.** decord 0.6.0 fails on a few narrow widths (8, 16, 24,
  48 px, measured) with ``DECORDArrayCopyFromTo: The size must exactly match``: FFmpeg hands it
  rows padded to an alignment and decord requires unpadded ones. That is not damage: the reader
  decodes such a file through PyAV instead (:mod:`lib.data.video_stream`), and only if that fails
  too :func:`frame_size_error` says what is wrong and how to re-encode, instead of "a packet does
  not decode".
"""

from __future__ import annotations

import os
from typing import Final

import numpy as np

from lib.data.errors import VideoFrameSizeError, VideoVariableFrameRateError

# Largest distance (in frame periods) between a frame's timestamp and its constant-rate slot
# ``first + i / fps`` that still counts as constant frame rate. Beyond half a period the frame
# sampled for an instant by index is not the frame shown at that instant.
VFR_TOLERANCE: Final[float] = 0.5
_COPY_FAILURE: Final[str] = "DECORDArrayCopyFromTo"
FIX_CFR: Final[str] = ("re-encode at a constant frame rate (ffmpeg -i IN -vsync cfr -r 25 OUT), or open with "
                       "strict=False to sample by frame index anyway")


def frame_rate_drift(starts: np.ndarray, fps: float) -> tuple[float, int]:
    """``(largest |timestamp - constant-rate slot| in frame periods, the frame where it occurs)``.

    ``starts``: increasing presentation timestamps (seconds) of every frame; slot ``i`` is
    ``starts[0] + i / fps``.
    """
    if len(starts) < 2:
        return 0.0, 0
    drift = (np.asarray(starts, np.float64) - starts[0]) * fps - np.arange(len(starts))
    worst = int(np.argmax(np.abs(drift)))
    return float(abs(drift[worst])), worst


def frame_rate_error(
    path: str | os.PathLike[str], starts: np.ndarray, fps: float
) -> VideoVariableFrameRateError | None:
    """The error to raise when the timestamps drift off the ``fps`` grid by more than the tolerance."""
    periods, frame = frame_rate_drift(starts, fps)
    if periods <= VFR_TOLERANCE:
        return None
    shown = float(starts[frame] - starts[0])
    return VideoVariableFrameRateError(
        path, f"variable frame rate: frame {frame} is shown at {shown:.3f} s but sampling at the average "
        f"{fps:g} fps assumes {frame / fps:.3f} s ({periods:.1f} frame periods off), so clips would play at the "
        f"wrong speed", FIX_CFR)


def is_frame_size_failure(decord_message: str) -> bool:
    """Whether a DECORDError is decord's row-copy size check (a frame size it cannot handle)."""
    return _COPY_FAILURE in decord_message


def frame_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) of the first video stream, read by PyAV (decord cannot tell it here)."""
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return int(stream.codec_context.width), int(stream.codec_context.height)
    except Exception:  # noqa: BLE001 - only a detail of the message
        return None


def frame_size_error(path: str | os.PathLike[str], detail: str) -> VideoFrameSizeError:
    """The error for a frame size decord 0.6.0 cannot copy out (``detail``: decord's message)."""
    size = frame_size(path)
    width = size[0] if size else None
    what = f"{size[0]}x{size[1]} frames" if size else "its frames"
    target = -(-width // 32) * 32 if width else 64
    return VideoFrameSizeError(
        path, f"the file is valid but decord 0.6.0 cannot copy out {what} (FFmpeg pads each row and decord requires "
        f"unpadded rows; it happens for a few narrow widths such as 8, 16, 24 and 48 px; decord: {detail})",
        f"re-encode it to a width decord handles, e.g. ffmpeg -i IN -vf scale={target}:-2 OUT")
