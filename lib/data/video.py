"""The one video reader of the project: a checked wrapper over decord (0.6.0, CPU).

A video of more than 1 GiB of decoded frames (long 4K footage; never a UCF101 video) is decoded
by the forward-only PyAV stream of :mod:`lib.data.video_stream` instead (same frames, one frame
held at a time where decord's read-ahead holds up to the rest of the video); opening, indexing
and every check below stay decord's.

Contract of every clip this module returns: a ``torch.float32`` tensor of layout
**(C, T, H, W)**, RGB channel order, values in **[-1, 1]** computed as ``x / 127.5 - 1`` from
the decoded uint8 pixel ``x`` (so 0 -> -1.0 and 255 -> 1.0 exactly), contiguous.
:func:`tensor_to_frames` is the inverse, for display. Raw frames (:meth:`VideoReader.read_frames`)
are ``numpy.uint8`` arrays of layout (T, H, W, 3), RGB.

Frame ``i`` is decord's ``i``-th packet in presentation order; sampling by time
(:mod:`lib.data.clips`) assumes it is shown at ``i / fps`` (constant frame rate; checked, see
below).

Bad input never hangs and never yields a silently wrong clip; it raises a typed error from
:mod:`lib.data.errors` naming the file, the problem and the fix:

* missing path, directory, 0-byte file, random bytes, a file cut inside its header ->
  :class:`VideoUnreadableError` (decord cannot open it);
* no video stream (audio only), or a container without a decodable video packet ->
  :class:`VideoEmptyError`;
* truncation, i.e. the container claims more frames than decode -> :class:`VideoTruncatedError`:
  an AVI whose header (``strh.dwLength``) counts more frames than its packets reach (a download
  that lost its tail and ``idx1`` index; decord just counts the packets it finds, the last one
  possibly cut short), an MP4 whose index points past the end of its data (decord fails while
  indexing), or a packet the decoder rejects (decord raises mid-read; for AVIs the first frame
  that does not decode is then located exactly, see :meth:`VideoReader._decode`);
* FFmpeg logging a decode error (MPEG-4/H.264 conceal damaged macroblocks, FFV1 drops frames
  with a bad CRC, and decord returns the concealed or a duplicated frame without any error) ->
  :class:`VideoUnreadableError`;
* packet timestamps that skip frame slots (dropped/missing frames: frame ``i`` is then not at
  ``i / fps``, and decord returns duplicated or undecodable frames across the gap) ->
  :class:`VideoUnreadableError`;
* packet timestamps that drift more than half a frame period off the constant-rate grid
  (variable frame rate: frame ``i`` is not shown at ``i / fps``, so clips would play at the wrong
  speed) -> :class:`VideoVariableFrameRateError` (:mod:`lib.data.video_checks`);
* a valid video whose frame size decord cannot copy out (8, 16, 24 or 48 px wide, measured) is
  read through the PyAV stream instead; only if that fails too -> :class:`VideoFrameSizeError`,
  saying how to re-encode it;
* a dangling symbolic link -> :class:`VideoUnreadableError` naming its target;
* a video shorter than one clip: 0 clips in multi-clip modes, :class:`VideoTooShortError` in
  single-clip modes (:func:`lib.data.clips.sample_clips`).

``strict=False`` turns these findings into warnings and clamps a truncated AVI to the frames
that truly decode; how damage is detected, clamped and attributed (and what no check can see)
is in :mod:`lib.data.video_damage`.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import decord
import numpy as np
import torch
from decord.bridge import use_torch

from lib.data.avi import (
    AviHeader,
)
from lib.data.clips import Clip, ClipSpec, SamplingMode, sample_clips, union_indices
from lib.data.errors import VideoEmptyError, VideoTruncatedError, VideoUnreadableError
from lib.data.ffmpeg_log import log_tap
from lib.data.spatial import SpatialPolicy, frames_to_tensor, tensor_to_frames
from lib.data.video_checks import frame_size
from lib.data.video_damage import FIX_REDOWNLOAD, DamageChecks, decord_message, detail
from lib.data.video_stream import FrameStream

logger = logging.getLogger(__name__)

DECORDError = decord.DECORDError
# Fresh-decoder re-reads that may clear a read flagged by FFmpeg errors coming from packets
# decord decoded ahead of the requested frames (see VideoReader._read).
_RETRIES: Final[int] = 3
# Decode at most this many bytes of uint8 frames per decord call in iter_clips (bounds memory
# for long or large videos; UCF101 at 320x240 fits ~1100 frames, i.e. any whole video).
DEFAULT_MAX_BATCH_BYTES: Final[int] = 256 * 2**20
DEFAULT_CLIP_SPEC: Final[ClipSpec] = ClipSpec()  # 16 frames at 16 fps
# Videos whose decoded frames add up to more than this are read through the forward-only PyAV
# stream (lib.data.video_stream), not decord: decord's read-ahead holds up to the rest of the
# video (GBs for a long 4K one). A UCF101 video is at most ~0.4 GB decoded, so it stays on decord.
DEFAULT_STREAM_ABOVE_BYTES: Final[int] = 4 * DEFAULT_MAX_BATCH_BYTES


# --- reader ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about a video: ``num_frames`` usable frames at ``fps``, size W x H."""

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Seconds covered by the frames (``num_frames / fps``)."""
        return self.num_frames / self.fps


class VideoReader(DamageChecks):
    """A checked decord reader for one file; use as a context manager.

    ``num_threads``: FFmpeg decoding threads (1 = one core per reader; scale with processes).
    ``strict``: raise on truncation, decode errors and timestamp gaps (default), or clamp and
    warn (see the module docstring for the exact rules).
    ``stream_above_bytes``: a video whose decoded frames add up to more than this (frame count x
    H x W x 3, from the container header) is decoded by the forward-only PyAV stream of
    :mod:`lib.data.video_stream` (bounded memory, same frames) instead of decord (whose
    read-ahead holds up to the rest of the video); ``None``: always decord. Opening, indexing
    and every check below stay decord's either way. :attr:`backend` says which one reads.

    Opening indexes every packet (decord reads the whole container once) and validates the
    container; nothing is decoded until a read (or :attr:`info`, for the frame size).
    """

    def __init__(self, path: str | os.PathLike[str], *, num_threads: int = 1, strict: bool = True,
                 stream_above_bytes: int | None = DEFAULT_STREAM_ABOVE_BYTES) -> None:
        if num_threads < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = FFmpeg's choice), got {num_threads}")
        self.path = Path(path)
        self.strict = strict
        self._num_threads = num_threads
        self._warned: set[str] = set()
        self._clamped = False  # num_frames was cut below what the container claims
        self._truncation: VideoTruncatedError | None = None  # found by a failed read (strict)
        self._decodable_count = 0  # frames before the first undecodable one, once found
        self._shape: tuple[int, int] | None = None  # (H, W) of decoded frames, once seen
        self._shape_hint: tuple[int, int] | None = None  # (H, W) declared by the container
        self._avi: AviHeader | None = None
        # What decord reads: the file, or (after a truncation was found) a temporary copy of it
        # that ends before the first packet that does not decode. (Not an in-memory copy:
        # decord 0.6.0 segfaults opening an AVI without idx1 from bytes.)
        self._source = str(self.path)
        self._prefix_copy: tempfile.TemporaryDirectory[str] | None = None
        # Decode only forward from the decord reader's position (no seeks): for AVIs without
        # an index, where decord's seeks return wrong frames silently (see avi_has_idx1).
        self._sequential_only = False
        self._position = 0  # next frame decord decodes without seeking
        self._frame_times: np.ndarray | None = None  # packet timestamps (s), set by _check_packets
        self._stream: FrameStream | None = None  # the PyAV reader, when backend == "stream"
        self.backend = "decord"
        self._vr: decord.VideoReader | None = self._open()
        try:
            self.fps = self._check_fps()
            self.num_frames = self._check_packets()
            if stream_above_bytes is not None and self._decoded_bytes() > stream_above_bytes:
                self.backend = "stream"
        except BaseException:
            self.close()  # free decord now, not when the exception's traceback dies
            raise

    # -- opening ----------------------------------------------------------------------------------
    def _open(self) -> decord.VideoReader:
        path = self.path
        if path.is_symlink() and not path.exists():
            raise VideoUnreadableError(path, f"is a symbolic link to {os.readlink(path)}, which does not exist",
                                       "restore the link's target or point the link at the video")
        if not path.exists():
            raise VideoUnreadableError(path, "file does not exist", "check the path and the dataset root")
        if path.is_dir():
            raise VideoUnreadableError(path, "is a directory, not a video file", "pass the path of a video file")
        try:
            with open(path, "rb") as fh:
                if not fh.read(1):
                    raise VideoUnreadableError(path, "file is empty (0 bytes)", FIX_REDOWNLOAD)
        except OSError as e:
            raise VideoUnreadableError(path, f"cannot be read: {e.strerror or e}",
                                       "check the file's permissions") from e
        tap = self._log_tap = log_tap()  # installed before the first file is opened
        mark = self._log_mark = tap.mark()  # errors from here on belong to this file
        try:
            return self._new_decord()
        except RuntimeError as e:  # decord's "Error reading <path>...": avformat_open_input failed
            raise VideoUnreadableError(
                path, "FFmpeg cannot open it as a video container (corrupt, cut inside its header, or not a video)"
                + detail(tap.errors_since(mark)), FIX_REDOWNLOAD) from e
        except DECORDError as e:
            text = str(e)
            if "cannot find video stream" in text:
                raise VideoEmptyError(path, "the container has no video stream (audio or data only)",
                                      "check that this is the intended video file") from e
            if "Cannot create buffer source" in text:
                # FFmpeg probing never decoded a frame, so the pixel format stayed unknown.
                raise VideoEmptyError(path, "FFmpeg could not decode a single frame while probing it (no video "
                                      "packet, or only broken ones)", FIX_REDOWNLOAD) from e
            if "av_read_frame failed" in text:
                raise VideoTruncatedError(
                    path, "reading its packets fails before the end of the index (file truncated: the index "
                    "points past the data)" + detail(tap.errors_since(mark)), FIX_REDOWNLOAD) from e
            raise VideoUnreadableError(path, f"decord failed to open it: {decord_message(text)}", FIX_REDOWNLOAD) from e
        except AssertionError as e:  # decord asserts a positive frame count
            raise VideoEmptyError(path, "the container reports 0 frames", FIX_REDOWNLOAD) from e

    def _new_decord(self) -> decord.VideoReader:
        return decord.VideoReader(self._source, ctx=decord.cpu(0), num_threads=self._num_threads)

    def _decoded_bytes(self) -> int:
        """Bytes of the whole video's uint8 RGB frames, by the container header (0 if unknown)."""
        size = self._shape_hint
        if size is None:
            wh = frame_size(self.path)
            size = (wh[1], wh[0]) if wh is not None else None
            self._shape_hint = size
        return self.num_frames * size[0] * size[1] * 3 if size is not None else 0

    def _check_fps(self) -> float:
        fps = float(self._require_open().get_avg_fps())
        if not (math.isfinite(fps) and fps > 0):
            raise VideoUnreadableError(self.path, f"no valid frame rate (container reports {fps})",
                                       "re-encode with a constant frame rate, e.g. ffmpeg -i IN -r 25 OUT")
        return fps

    # -- properties -------------------------------------------------------------------------------
    @property
    def info(self) -> VideoInfo:
        """Path, usable frame count, fps and frame size (decodes frame 0 if none was read yet:
        decord exposes no frame size)."""
        height, width = self._frame_shape()
        return VideoInfo(self.path, self.num_frames, self.fps, width=width, height=height)

    def _frame_shape(self) -> tuple[int, int]:
        if self._shape is None:
            self._read(np.zeros(1, dtype=np.int64))
        assert self._shape is not None
        return self._shape

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    # -- reading ----------------------------------------------------------------------------------
    def read_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 (T, H, W, 3) RGB frames at ``indices`` (any order, repeats allowed).

        Sorted indices decode in one sequential pass. Zero-copy view of decord's buffer.
        """
        return self._read(indices).numpy()

    def read_clip(self, indices: Sequence[int] | np.ndarray, *, spatial: SpatialPolicy | None = None) -> torch.Tensor:
        """float32 (C, T, H, W) in [-1, 1] clip of the frames at ``indices``, through ``spatial``."""
        frames = self._read(indices)
        return spatial.apply_to_frames(frames) if spatial is not None else frames_to_tensor(frames)

    def _read(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """uint8 torch (T, H, W, 3) sharing decord's buffer; all integrity checks live here."""
        self._require_open()
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"indices must be a non-empty 1-D sequence, got shape {idx.shape}")
        bad = idx[(idx < 0) | (idx >= self.num_frames)]
        if bad.size:
            if not self.strict and self._clamped:
                raise VideoTruncatedError(self.path, f"frames {bad.tolist()[:5]} are past the {self.num_frames} "
                                          "frames that decode", FIX_REDOWNLOAD)
            raise IndexError(f"{self.path}: frame indices {bad.tolist()[:5]} out of range [0, {self.num_frames})")
        if self._truncation is not None and int(idx.max()) >= self._decodable_count:
            raise self._truncation
        frames = self._decode(idx)
        errors = self._new_log_errors()
        if errors:
            # decord's decoder thread runs ahead of the requested frames (its demuxer keeps
            # pushing packets until a frame comes out), so the errors may come from packets
            # past them, and may even arrive after get_batch returned (they then show up here
            # on the next read). An error in a returned frame is logged before get_batch
            # returns, every time; read-ahead reaches a given packet only sometimes. So: read
            # again on fresh decoders; a clean attempt proves the frames are clean.
            for _ in range(_RETRIES):
                self._reopen()
                try:
                    retry = self._get_batch(idx)
                except DECORDError:
                    continue
                if not self._new_log_errors():
                    self._shape = (int(retry.shape[1]), int(retry.shape[2]))
                    return retry
            self._problem(
                VideoUnreadableError(
                    self.path, f"FFmpeg reported decode errors while decoding up to frame {int(idx.max())} "
                    f"(damaged stream: decord returns concealed or duplicated frames; the damage is in these "
                    f"frames or just after them)" + detail(errors),
                    FIX_REDOWNLOAD + "; strict=False accepts the frames as decoded",
                ),
                key="decode",
            )
        self._shape = (int(frames.shape[1]), int(frames.shape[2]))
        return frames

    def _new_log_errors(self) -> list[str]:
        """FFmpeg errors logged since the last call (or since opening): this file's (decord's
        FFmpeg through the log tap, PyAV's through the stream)."""
        errors = self._log_tap.errors_since(self._log_mark)
        self._log_mark = self._log_tap.mark()
        if self._stream is not None:
            errors += self._stream.take_errors()
        return errors

    def _get_batch(self, idx: np.ndarray) -> torch.Tensor:
        """decord's get_batch, or for sequential-only sources a forward run over
        [position, max(idx)] (restarting from frame 0 to go back) from which idx is picked;
        the PyAV stream when :attr:`backend` is ``"stream"``."""
        if self.backend == "stream":
            if self._stream is None:
                self._stream = FrameStream(self._source, fps=self.fps, num_frames=self.num_frames,
                                           frame_times=self._frame_times, num_threads=self._num_threads)
            return self._stream.read(idx)
        if not self._sequential_only:
            return self._decord_batch(idx)
        last = int(idx.max())
        if int(idx.min()) < self._position:
            self._reopen()
        start = self._position
        run = self._decord_batch(np.arange(start, last + 1))
        self._position = last + 1
        return run[torch.as_tensor(idx - start)]

    def _decord_batch(self, idx: np.ndarray) -> torch.Tensor:
        # Zero-copy DLPack tensor whatever bridge the caller set globally. decord is reached
        # through self only: a local would keep it (and its decoder thread) alive in the
        # traceback of an error raised by the caller, which close() could then not free.
        with use_torch():
            return self._require_open().get_batch(idx)

    def _reopen(self) -> None:
        """A fresh decord reader; the old one is freed first, joining its decoder thread, so
        none of its late log messages can land in the fresh reader's window."""
        self._vr = None
        self._vr = self._new_decord()
        self._position = 0
        self._close_stream()
        self._new_log_errors()  # opening an already validated file: its probe messages are known

    def _require_open(self) -> decord.VideoReader:
        if self._vr is None:
            raise ValueError(f"{self.path}: reader is closed")
        return self._vr

    # -- clips ------------------------------------------------------------------------------------
    def iter_clips(
        self,
        *,
        spec: ClipSpec = DEFAULT_CLIP_SPEC,
        mode: SamplingMode = "all",
        spatial: SpatialPolicy | None = None,
        seed: int | np.random.Generator | None = None,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> Iterator[tuple[Clip, torch.Tensor]]:
        """Yield ``(clip, float32 (C, T, H', W') tensor)`` for the clips of ``mode`` (see :func:`iter_clips`)."""
        for clip, frames in self.iter_clip_frames(spec=spec, mode=mode, seed=seed, max_batch_bytes=max_batch_bytes):
            yield clip, spatial.apply_to_frames(frames) if spatial is not None else frames_to_tensor(frames)

    def iter_clip_frames(
        self,
        *,
        spec: ClipSpec = DEFAULT_CLIP_SPEC,
        mode: SamplingMode = "all",
        seed: int | np.random.Generator | None = None,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> Iterator[tuple[Clip, torch.Tensor]]:
        """Yield ``(clip, uint8 (T, H, W, 3) frames)``: :meth:`iter_clips` before any conversion.

        For pipelines that move the uint8 frames to a GPU and run
        ``spatial.apply_to_frames`` there. The frames are views into the decoded batch where
        the clip's frames are consecutive in it (no copy), else a gathered copy.
        """
        done: set[int] = set()
        while True:
            planned_for = self.num_frames
            clips = [c for c in sample_clips(self.num_frames, self.fps, spec, mode=mode, seed=seed, path=self.path)
                     if c.index not in done]
            try:
                for group in self._batches(clips, spec, max_batch_bytes):
                    union = union_indices(group)
                    frames = self._read(union)
                    position = {frame: i for i, frame in enumerate(union)}
                    for clip in group:
                        yield clip, _select(frames, [position[i] for i in clip.frame_indices])
                        done.add(clip.index)
                    del frames  # before the next batch is decoded: one batch in memory at a time
                return
            except VideoTruncatedError:
                if self.strict or self.num_frames >= planned_for:
                    raise
                # strict=False clamped the video: plan again for its true length; clips already
                # yielded are kept (the "all"/"official" plans of a shorter video are prefixes).

    def _batches(self, clips: list[Clip], spec: ClipSpec, max_batch_bytes: int) -> Iterator[list[Clip]]:
        """Consecutive groups of clips whose union of frames fits ``max_batch_bytes``."""
        if not clips:
            return
        # Frame size for the memory budget: from the container header (AVI) or, else, decoded.
        height, width = self._shape or self._shape_hint or self._frame_shape()
        budget = max(spec.num_frames, max_batch_bytes // (3 * height * width))
        group: list[Clip] = []
        frames_in_group = 0
        for clip in clips:
            if group and frames_in_group + clip.num_frames > budget:
                yield group
                group, frames_in_group = [], 0
            group.append(clip)
            frames_in_group += clip.num_frames
        if group:
            yield group

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Free decord's reader (joins its decoder thread, so none of its messages can be
        attributed to a later file), the PyAV stream and any temporary copy. Idempotent."""
        self._vr = None
        self._close_stream()
        if self._prefix_copy is not None:
            self._prefix_copy.cleanup()
            self._prefix_copy = None

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader({str(self.path)!r}, num_frames={self.num_frames}, fps={self.fps:g})"


# --- convenience -----------------------------------------------------------------------------------
def probe_video(path: str | os.PathLike[str], *, strict: bool = True) -> VideoInfo:
    """Open, validate and describe a video (indexes its packets, decodes its first frame)."""
    with VideoReader(path, strict=strict) as reader:
        return reader.info


def iter_clips(
    path: str | os.PathLike[str],
    *,
    spec: ClipSpec = DEFAULT_CLIP_SPEC,
    mode: SamplingMode = "all",
    spatial: SpatialPolicy | None = None,
    seed: int | np.random.Generator | None = None,
    num_threads: int = 1,
    strict: bool = True,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> Iterator[tuple[Clip, torch.Tensor]]:
    """Yield ``(clip, tensor)`` for every clip of ``mode`` in the video at ``path``, in order.

    ``tensor``: float32 (C, T, H', W') in [-1, 1] after ``spatial`` (native size if None).
    The union of all needed frames is decoded in sorted ``get_batch`` calls of at most
    ``max_batch_bytes`` of uint8 frames (one call for a whole UCF101 video), never per clip,
    so each frame is decoded once and seeks happen only across skipped stretches.
    ``mode="all"`` on a video shorter than one clip yields nothing; ``"center"``/``"random"``
    raise :class:`~lib.data.errors.VideoTooShortError`. ``seed`` is needed for ``"random"``.
    """
    with VideoReader(path, num_threads=num_threads, strict=strict) as reader:
        yield from reader.iter_clips(spec=spec, mode=mode, spatial=spatial, seed=seed, max_batch_bytes=max_batch_bytes)


def iter_clip_frames(
    path: str | os.PathLike[str],
    *,
    spec: ClipSpec = DEFAULT_CLIP_SPEC,
    mode: SamplingMode = "all",
    seed: int | np.random.Generator | None = None,
    num_threads: int = 1,
    strict: bool = True,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> Iterator[tuple[Clip, torch.Tensor]]:
    """:func:`iter_clips` without the conversion: ``(clip, uint8 (T, H, W, 3) RGB frames)``.

    The decode-only hot path for a GPU pipeline: move the uint8 frames to the device (a quarter
    of the float32 bytes) and call ``spatial.apply_to_frames`` there, which gives the same
    float32 (C, T, H', W') clip as :func:`iter_clips` (bit for bit on CPU).
    """
    with VideoReader(path, num_threads=num_threads, strict=strict) as reader:
        yield from reader.iter_clip_frames(spec=spec, mode=mode, seed=seed, max_batch_bytes=max_batch_bytes)


def _select(frames: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """frames[positions]: a view when the positions are consecutive, else a copy."""
    first = positions[0]
    if positions == list(range(first, first + len(positions))):
        return frames[first : first + len(positions)]
    return frames[torch.as_tensor(positions)]
