"""Forward-only PyAV decoding: the :class:`~lib.data.video.VideoReader`'s path for large videos.

Why a second decoder: decord's demuxer and decoder threads run ahead of the requested frames
into unbounded queues of converted RGB frames, so a read near the start of a long
high-resolution video holds most of the rest of it (measured: 2.1 GB after the first 16-frame
read of an 8-s 4K video, 85 frames ahead; ``benchmarks/decode_memory.py``). No decord option
bounds that. :class:`FrameStream` decodes one packet at a time in the calling thread, converts
only the frames asked for and keeps nothing else, so its memory is one frame plus the batch it
returns, whatever the video's length.

Contract (the same as decord's reads, so the reader's callers cannot tell the two apart):

* frame ``i`` is the ``i``-th frame the decoder outputs, i.e. the ``i``-th in presentation
  order; each output frame's timestamp is checked against the container's packet timestamp
  ``i`` (within half a frame period), so a decoder that drops or inserts a frame raises
  :class:`FrameStreamError` instead of shifting every later frame by one;
* frames are uint8 RGB (``rgb24``) through FFmpeg's default conversion, bit-identical to
  decord's for the H.264, MPEG-4 (XVID) and FFV1 files measured;
* FFmpeg's error-level messages while decoding (concealed macroblocks, CRC mismatches) are
  collected for the reader (:meth:`FrameStream.take_errors`), and every message up to warning
  level goes to the ``lib.data.video.ffmpeg`` logger at DEBUG level, as decord's log tap does
  (:mod:`lib.data.ffmpeg_log`); nothing reaches stderr.

Going back in the file reopens it and decodes from the start: the readers' reads are sorted
and forward (:func:`lib.data.clips.union_indices`), and a forward-only decoder needs no seek, so
AVIs without an index (whose seeks return wrong frames) are read correctly too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Final

import numpy as np
import torch

from lib.data.ffmpeg_log import ffmpeg_logger

# FFmpeg's AV_LOG_ERROR: messages at this level or more severe are findings about the file.
_AV_LOG_ERROR: Final[int] = 16


class FrameStreamError(RuntimeError):
    """PyAV failed on a packet, or the decoded frames do not line up with the container's index."""


class FrameStream:
    """Decodes one file forward with PyAV, keeping only the frames a read asks for.

    ``frame_times``: the container's packet timestamps in presentation order (seconds, one per
    frame), the reference each decoded frame's time is checked against; ``None`` when the file
    has no usable timestamps (then only the frame count is checked). ``num_threads``: FFmpeg
    decoding threads (1 = decode in the calling thread, 0 = FFmpeg's choice).
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float, num_frames: int,
                 frame_times: np.ndarray | None = None, num_threads: int = 1) -> None:
        self.path = str(path)
        self.fps = float(fps)
        self.num_frames = int(num_frames)
        self._frame_times = None if frame_times is None else np.asarray(frame_times, dtype=np.float64)
        self._num_threads = int(num_threads)
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._next = 0  # index of the next frame the decoder outputs
        self._errors: list[str] = []

    # -- reading ----------------------------------------------------------------------------------
    def read(self, indices: np.ndarray) -> torch.Tensor:
        """uint8 (T, H, W, 3) RGB frames at ``indices`` (any order, repeats allowed)."""
        idx = np.asarray(indices, dtype=np.int64)
        wanted = np.unique(idx)
        if wanted.size == 0:
            raise ValueError("indices must not be empty")
        if int(wanted[0]) < self._next:
            self.close()  # going back: decode again from the start
        # Where each distinct frame goes in the output (repeats: several rows).
        rows: dict[int, np.ndarray] = {int(f): np.flatnonzero(idx == f) for f in wanted}
        out: torch.Tensor | None = None
        last = int(wanted[-1])
        import av

        previous = av.logging.get_level(), av.logging.get_skip_repeated()
        av.logging.set_level(av.logging.WARNING)
        av.logging.set_skip_repeated(False)  # a reopened file's errors repeat its earlier ones word for word
        try:
            with av.logging.Capture(local=False) as logs:
                while self._next <= last:
                    frame = self._decode_next()
                    index = self._next
                    self._next += 1
                    if index not in rows:
                        continue  # decoded (the codec needs it) but never converted
                    rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                    if out is None:
                        out = torch.empty((len(idx), *rgb.shape), dtype=torch.uint8)
                    out[torch.as_tensor(rows[index])] = rgb
        finally:
            av.logging.set_level(previous[0])
            av.logging.set_skip_repeated(previous[1])
        for level, name, message in logs:
            if message.strip():
                ffmpeg_logger.debug("%s: %s", name, message.strip())
                if level <= _AV_LOG_ERROR:
                    self._errors.append(f"{name}: {message.strip()}")
        assert out is not None
        return out

    def take_errors(self) -> list[str]:
        """FFmpeg error messages logged by the reads since the last call."""
        errors, self._errors = self._errors, []
        return errors

    def _decode_next(self) -> Any:
        """The next decoded frame, checked against the container's index."""
        import av

        if self._frames is None:
            self._open()
        assert self._frames is not None
        try:
            frame = next(self._frames)
        except StopIteration:
            raise FrameStreamError(f"the decoder output only {self._next} of the {self.num_frames} indexed frames "
                                   f"(a packet does not decode)") from None
        except av.error.FFmpegError as e:
            raise FrameStreamError(f"a packet does not decode after frame {self._next - 1} (PyAV: {e})") from e
        times = self._frame_times
        if times is not None and frame.time is not None and self._next < len(times):
            expected = float(times[self._next])
            if abs(float(frame.time) - expected) > 0.5 / self.fps:
                raise FrameStreamError(
                    f"decoded frame {self._next} is at {float(frame.time):.3f} s but the container's index puts it at "
                    f"{expected:.3f} s (the decoder dropped or added a frame)")
        return frame

    # -- lifetime ---------------------------------------------------------------------------------
    def _open(self) -> None:
        import av

        try:
            self._container = av.open(self.path)
            stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as e:
            self.close()
            raise FrameStreamError(f"PyAV cannot open its video stream ({e})") from e
        if self._num_threads == 1:
            stream.thread_type = "NONE"
        else:
            stream.thread_type = "AUTO"
            stream.thread_count = self._num_threads
        self._frames = self._container.decode(stream)
        self._next = 0

    def close(self) -> None:
        """Close the file (idempotent); the next read decodes from the start."""
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None
        self._next = 0
