"""The one video reader of the project: a checked wrapper over decord (0.6.0, CPU).

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
* a valid video whose frame size decord cannot copy out (8, 16, 24 or 48 px wide, measured) ->
  :class:`VideoFrameSizeError`, saying how to re-encode it;
* a dangling symbolic link -> :class:`VideoUnreadableError` naming its target;
* a video shorter than one clip: 0 clips in multi-clip modes, :class:`VideoTooShortError` in
  single-clip modes (:func:`lib.data.clips.sample_clips`).

``strict=False`` turns decode errors, timestamp gaps and frame-rate drift into warnings and clamps a truncated
AVI to the frames that truly decode: its complete packets (a cut one is dropped: lossless
decoders reject it, lossy ones conceal it silently), or, when a packet fails to decode, the
frames before it. decord then reads a temporary copy of the file cut there, so the clamped
video behaves exactly, and deterministically, like a clean video of that length. (Reading the
original would not: decord gives up at the first undecodable packet and its demuxer reads ahead
of the requested frames, so reads of good frames near a bad packet fail or succeed from run to
run.) Non-AVI containers are not clamped: a packet that fails to decode raises in both modes.

An AVI without index (a cut file, or the copy above) is decoded forward only: there FFmpeg
flags every packet as a keyframe and decord's seeks return wrong frames without an error.

Decode errors are seen through a log callback installed on decord's own FFmpeg (libavutil
bundled in the wheel), which also keeps FFmpeg's warnings (e.g. "Failed to parse extradata"
on every XVID file PyAV writes, "packed B-frames" on DivX files) out of stderr: they go to the
``lib.data.video.ffmpeg`` logger at DEBUG level. Attribution is per file, not per frame:
decord decodes ahead of the requested frames, so a read is flagged when its frames, or packets
decoded ahead of them, are damaged (damage inside the decoded range is always caught; damage
just past it may or may not be). FFmpeg's log is per process: with several readers decoding at
once in one process (threads, or readers left open), an error may be attributed to the wrong
file - a false alarm, never a miss. Readers are closed by :func:`iter_clips` and the context
manager; DataLoader workers are processes and unaffected.

Not detectable through decord: damage that FFmpeg decodes without logging anything (e.g. an
FFV1 packet overwritten with zeros comes back as a stale frame) and bit-valid garbage in
uncompressed video.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import logging
import math
import os
import re
import struct
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import decord
import numpy as np
import torch
from decord.bridge import use_torch

from lib.data.clips import Clip, ClipSpec, SamplingMode, sample_clips, union_indices
from lib.data.errors import VideoEmptyError, VideoTruncatedError, VideoUnreadableError
from lib.data.spatial import SpatialPolicy, uint8_to_unit_range
from lib.data.video_checks import frame_rate_error, frame_size_error, is_frame_size_failure

logger = logging.getLogger(__name__)
ffmpeg_logger = logging.getLogger(__name__ + ".ffmpeg")

DECORDError = decord.DECORDError
# Decode at most this many bytes of uint8 frames per decord call in iter_clips (bounds memory
# for long or large videos; UCF101 at 320x240 fits ~1100 frames, i.e. any whole video).
DEFAULT_MAX_BATCH_BYTES: Final[int] = 256 * 2**20
# A gap between consecutive packet timestamps larger than this many frame periods means
# missing frames (1.5: halfway between the regular 1 and the first gap, 2).
_GAP_TOLERANCE: Final[float] = 1.5
# Fresh-decoder re-reads that may clear a read flagged by FFmpeg errors coming from packets
# decord decoded ahead of the requested frames (see VideoReader._read).
_RETRIES: Final[int] = 3
_FIX_REDOWNLOAD = "re-download or re-extract the file (compare its size/checksum with the source), or drop it from the split"


# --- FFmpeg log tap ------------------------------------------------------------------------------
class _FFmpegLogTap:
    """Routes decord's FFmpeg log to Python logging and counts error-level messages.

    ``mark()`` then ``errors_since(mark)`` gives the errors logged in between (any thread).
    """

    AV_LOG_ERROR: Final[int] = 16
    AV_LOG_WARNING: Final[int] = 24

    def __init__(self) -> None:
        self.installed = False
        self._count = 0
        self._recent: collections.deque[tuple[int, str]] = collections.deque(maxlen=32)
        self._lock = threading.Lock()
        self._format_line = None
        self._callback = None  # keep the ctypes thunk alive for the life of the process

    def install(self) -> None:
        lib = _decord_libavutil()
        if lib is None:
            logger.warning(
                "decord's bundled libavutil was not found: FFmpeg decode errors cannot be detected "
                "(concealed frames pass unnoticed) and FFmpeg warnings go to stderr"
            )
            return
        avutil = ctypes.CDLL(str(lib))
        fmt_line = avutil.av_log_format_line2
        fmt_line.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                             ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        fmt_line.restype = ctypes.c_int
        self._format_line = fmt_line
        # va_list is passed through as an opaque pointer to FFmpeg's own formatter.
        thunk = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
        self._callback = thunk(self._on_log)
        avutil.av_log_set_callback(self._callback)
        os.register_at_fork(after_in_child=self._reset_lock)
        # At interpreter exit, hand logging back to FFmpeg's own (stderr) callback: a decoder
        # thread must not call into a Python that is being torn down.
        default = ctypes.cast(avutil.av_log_default_callback, ctypes.c_void_p)
        atexit.register(avutil.av_log_set_callback, default)
        self.installed = True

    def _reset_lock(self) -> None:
        self._lock = threading.Lock()  # a fork while another thread held it must not deadlock

    def _on_log(self, avcl: int | None, level: int, fmt: bytes | None, va_list: int | None) -> None:
        # Runs on FFmpeg's threads (decord's decoder thread). Must never raise into C.
        if level > self.AV_LOG_WARNING:
            return  # verbose/debug/trace: dropped cheaply (several per frame)
        try:
            buf = ctypes.create_string_buffer(512)
            prefix = ctypes.c_int(1)
            self._format_line(avcl, level, fmt, va_list, buf, len(buf), ctypes.byref(prefix))
            message = buf.value.decode("utf-8", "replace").strip()
            if level <= self.AV_LOG_ERROR:
                with self._lock:
                    self._count += 1
                    self._recent.append((self._count, message))
            ffmpeg_logger.debug("%s", message)
        except Exception:  # noqa: BLE001 - an exception cannot cross into C
            pass

    def mark(self) -> int:
        with self._lock:
            return self._count

    def errors_since(self, mark: int) -> list[str]:
        with self._lock:
            if self._count == mark:
                return []
            return [msg for seq, msg in self._recent if seq > mark] or [f"{self._count - mark} error(s)"]


def _decord_libavutil() -> Path | None:
    """The libavutil decord is linked with: the copy auditwheel bundles next to the package."""
    site = Path(decord.__file__).resolve().parent.parent
    candidates = sorted(site.glob("decord.libs/libavutil*.so*"))
    return candidates[0] if len(candidates) == 1 else None


_LOG_TAP = _FFmpegLogTap()
_LOG_TAP.install()


# --- value range helpers -------------------------------------------------------------------------
def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) RGB frames -> float32 (C, T, H, W) in [-1, 1] (``x / 127.5 - 1``)."""
    t = torch.from_numpy(frames) if isinstance(frames, np.ndarray) else frames
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {t.dtype} {tuple(t.shape)}")
    return uint8_to_unit_range(t.permute(0, 3, 1, 2))


def tensor_to_frames(clip: torch.Tensor) -> np.ndarray:
    """float (C, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3) for display (rounded, clamped).

    Exact inverse of :func:`frames_to_tensor`; out-of-range values (reconstructions) clamp.
    """
    if not clip.is_floating_point() or clip.ndim != 4 or clip.shape[0] != 3:
        raise ValueError(f"expected a float (3, T, H, W) clip, got {clip.dtype} {tuple(clip.shape)}")
    pixels = ((clip.detach().to("cpu", torch.float32) + 1.0) * 127.5).round_().clamp_(0, 255)
    return pixels.to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()


# --- container facts decord does not expose --------------------------------------------------------
@dataclass(frozen=True)
class AviHeader:
    """What an AVI's ``hdrl`` list declares about its first video stream (None: not stated)."""

    frame_count: int | None  # OpenDML dmlh.dwTotalFrames, else strh.dwLength, else avih.dwTotalFrames
    width: int | None  # strf BITMAPINFOHEADER biWidth
    height: int | None  # |biHeight| (negative means top-down rows)
    video_stream: int | None = None  # stream number: its packets are chunks "NNdc"/"NNdb"
    super_index: bool = False  # an OpenDML "indx" chunk in the video stream's header


def read_avi_header(path: str | os.PathLike[str]) -> AviHeader | None:
    """Parse the ``hdrl`` list at the start of an AVI (a few KiB read); None if not an AVI."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
            if len(head) < 24 or head[:4] != b"RIFF" or head[8:12] != b"AVI " or head[12:16] != b"LIST" or head[20:24] != b"hdrl":
                return None
            (hdrl_size,) = struct.unpack("<I", head[16:20])
            body = fh.read(min(max(hdrl_size - 4, 0), 16 * 2**20))
    except OSError:
        return None

    def chunks(buf: bytes) -> Iterator[tuple[bytes, bytes]]:
        off = 0
        while off + 8 <= len(buf):
            fourcc, size = buf[off : off + 4], struct.unpack("<I", buf[off + 4 : off + 8])[0]
            yield fourcc, buf[off + 8 : off + 8 + size]
            off += 8 + size + (size & 1)

    total = dml_total = length = width = height = stream = None
    super_index = False
    stream_number = 0
    for fourcc, data in chunks(body):
        if fourcc == b"avih" and len(data) >= 20:
            total = struct.unpack("<I", data[16:20])[0]
        elif fourcc == b"LIST" and data[:4] == b"odml":
            for sub, sub_data in chunks(data[4:]):
                if sub == b"dmlh" and len(sub_data) >= 4:
                    dml_total = struct.unpack("<I", sub_data[:4])[0]
        elif fourcc == b"LIST" and data[:4] == b"strl":
            parts = dict(chunks(data[4:]))
            strh, strf = parts.get(b"strh", b""), parts.get(b"strf", b"")
            if stream is None and len(strh) >= 36 and strh[:4] == b"vids":
                stream = stream_number
                super_index = b"indx" in parts
                length = struct.unpack("<I", strh[32:36])[0]
                if len(strf) >= 12:
                    w, h = struct.unpack("<ii", strf[4:12])
                    width, height = abs(w), abs(h)
            stream_number += 1
    frame_count = next((n for n in (dml_total, length, total) if n), None)
    return AviHeader(frame_count=frame_count, width=width or None, height=height or None, video_stream=stream,
                     super_index=super_index)


def avi_has_idx1(path: str | os.PathLike[str]) -> bool:
    """Whether the AVI has its ``idx1`` index (the chunk after ``movi``; a cut file loses it).

    Without an index FFmpeg flags every packet as a keyframe, so decord's seeks land on
    frames that cannot be decoded alone and return wrong pixels without an error.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            off = 12
            while off + 8 <= size:
                fh.seek(off)
                head = fh.read(8)
                if head[:4] == b"idx1":
                    return True
                (chunk,) = struct.unpack("<I", head[4:8])
                off += 8 + chunk + (chunk & 1)
    except OSError:
        pass
    return False


def avi_video_packets(data: bytes, video_stream: int) -> list[tuple[int, int]] | None:
    """(offset of the chunk header, payload size) of each packet of ``video_stream`` in the
    ``movi`` list of AVI bytes, in file order; the last one may extend past the end of a cut
    file. None if there is no ``movi`` list."""
    ids = (b"%02ddc" % video_stream, b"%02ddb" % video_stream)
    out: list[tuple[int, int]] = []

    def walk(start: int, end: int, *, top: bool) -> bool:
        off = start
        while off + 12 <= end or (not top and off + 8 <= end):
            fourcc, size = data[off : off + 4], struct.unpack("<I", data[off + 4 : off + 8])[0]
            if fourcc == b"LIST" and data[off + 8 : off + 12] == b"movi" and top:
                walk(off + 12, min(off + 8 + size, len(data)), top=False)
                return True
            if fourcc == b"LIST" and data[off + 8 : off + 12] == b"rec " and not top:
                walk(off + 12, min(off + 8 + size, len(data)), top=False)
            elif fourcc in ids and not top:
                out.append((off, size))
            off += 8 + size + (size & 1)
        return False

    return out if data[:4] == b"RIFF" and walk(12, len(data), top=True) else None


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


class VideoReader:
    """A checked decord reader for one file; use as a context manager.

    ``num_threads``: FFmpeg decoding threads (1 = one core per reader; scale with processes).
    ``strict``: raise on truncation, decode errors and timestamp gaps (default), or clamp and
    warn (see the module docstring for the exact rules).

    Opening indexes every packet (decord reads the whole container once) and validates the
    container; nothing is decoded until a read (or :attr:`info`, for the frame size).
    """

    def __init__(self, path: str | os.PathLike[str], *, num_threads: int = 1, strict: bool = True) -> None:
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
        self._vr: decord.VideoReader | None = self._open()
        try:
            self.fps = self._check_fps()
            self.num_frames = self._check_packets()
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
                    raise VideoUnreadableError(path, "file is empty (0 bytes)", _FIX_REDOWNLOAD)
        except OSError as e:
            raise VideoUnreadableError(path, f"cannot be read: {e.strerror or e}", "check the file's permissions") from e
        mark = self._log_mark = _LOG_TAP.mark()  # errors from here on belong to this file
        try:
            return self._new_decord()
        except RuntimeError as e:  # decord's "Error reading <path>...": avformat_open_input failed
            raise VideoUnreadableError(
                path, "FFmpeg cannot open it as a video container (corrupt, cut inside its header, or not a video)"
                + _detail(_LOG_TAP.errors_since(mark)), _FIX_REDOWNLOAD) from e
        except DECORDError as e:
            text = str(e)
            if "cannot find video stream" in text:
                raise VideoEmptyError(path, "the container has no video stream (audio or data only)",
                                      "check that this is the intended video file") from e
            if "Cannot create buffer source" in text:
                # FFmpeg probing never decoded a frame, so the pixel format stayed unknown.
                raise VideoEmptyError(path, "FFmpeg could not decode a single frame while probing it (no video "
                                      "packet, or only broken ones)", _FIX_REDOWNLOAD) from e
            if "av_read_frame failed" in text:
                raise VideoTruncatedError(
                    path, "reading its packets fails before the end of the index (file truncated: the index "
                    "points past the data)" + _detail(_LOG_TAP.errors_since(mark)), _FIX_REDOWNLOAD) from e
            raise VideoUnreadableError(path, f"decord failed to open it: {_decord_message(text)}", _FIX_REDOWNLOAD) from e
        except AssertionError as e:  # decord asserts a positive frame count
            raise VideoEmptyError(path, "the container reports 0 frames", _FIX_REDOWNLOAD) from e

    def _new_decord(self) -> decord.VideoReader:
        return decord.VideoReader(self._source, ctx=decord.cpu(0), num_threads=self._num_threads)

    def _check_fps(self) -> float:
        fps = float(self._require_open().get_avg_fps())
        if not (math.isfinite(fps) and fps > 0):
            raise VideoUnreadableError(self.path, f"no valid frame rate (container reports {fps})",
                                       "re-encode with a constant frame rate, e.g. ffmpeg -i IN -r 25 OUT")
        return fps

    def _check_packets(self) -> int:
        """Number of usable frames, after checking packet timestamps against the header."""
        claimed = len(self._require_open())
        try:
            # (n, 2) start/stop seconds of each indexed packet in presentation order; decord
            # falls back to the header's count for len() when it indexed no packet at all, and
            # then this raises IndexError on its empty table.
            timestamps = self._require_open().get_frame_timestamp(np.arange(claimed))
            starts = np.asarray(timestamps)[:, 0].astype(np.float64)
        except IndexError:
            raise VideoEmptyError(self.path, f"the container holds no video packet (its header claims {claimed} frames)",
                                  _FIX_REDOWNLOAD) from None
        packets = len(starts)
        reach = packets  # how many frame slots the packets cover
        steps = np.diff(starts)
        if packets > 1 and not np.all(steps > 0):
            # No usable timestamps (e.g. raw streams without pts): packets cannot be placed in
            # time, so gaps are undetectable and truncation is judged on the packet count.
            logger.debug("%s: packet timestamps are not increasing; timestamp checks skipped", self.path)
            steps = np.zeros(0)
        elif packets > 1:
            reach = int(np.floor((starts[-1] - starts[0]) * self.fps + 0.5)) + 1
        gaps = np.flatnonzero(steps > _GAP_TOLERANCE / self.fps)
        if gaps.size:
            first = int(gaps[0])
            self._problem(
                VideoUnreadableError(
                    self.path,
                    f"packet timestamps skip {reach - packets} frame slot(s) ({gaps.size} gap(s), the first after "
                    f"frame {first} at {starts[first]:.3f} s): missing or dropped frames, so frame i is not shown at "
                    f"i / fps and decord may return duplicated frames across the gap",
                    "re-encode at a constant frame rate (ffmpeg -i IN -vsync cfr OUT), or open with strict=False "
                    "to sample by frame index anyway",
                ),
                key="gaps",
            )
        elif steps.size:
            vfr = frame_rate_error(self.path, starts, self.fps)
            if vfr is not None:
                self._problem(vfr, key="vfr")
        avi = self._avi = read_avi_header(self.path)
        if avi is not None and avi.width and avi.height:
            self._shape_hint = (avi.height, avi.width)
        self._sequential_only = avi is not None and not avi.super_index and not avi_has_idx1(self.path)
        declared = avi.frame_count if avi is not None else None
        if declared is None or declared <= reach:
            return packets
        # Truncated AVI (lost its tail and its idx1 index). decord counts the packets it finds;
        # the last may be cut short and then fails to decode (lossless codecs) or is concealed
        # silently (lossy ones), and decord's read-ahead can make reads of earlier frames fail too.
        complete = self._complete_avi_packets()
        self._problem(
            VideoTruncatedError(
                self.path,
                f"the AVI header declares {declared} frames but the packets stop at frame {reach} "
                f"(file truncated; strict=False would use its {complete} complete packets)",
                _FIX_REDOWNLOAD,
            ),
            key="truncated",
        )
        if complete < 1:
            raise VideoEmptyError(self.path, f"truncated to {packets} packet(s), none complete", _FIX_REDOWNLOAD)
        if complete < packets:
            self._use_prefix(complete)
        return complete

    def _complete_avi_packets(self) -> int:
        """Leading video packets whose bytes are all in the file (rule for strict=False)."""
        data = self.path.read_bytes()
        video_stream = self._avi.video_stream if self._avi is not None else None
        chunks = avi_video_packets(data, video_stream) if video_stream is not None else None
        if not chunks:
            return 0
        complete = 0
        for off, size in chunks:
            if off + 8 + size > len(data):
                break
            complete += 1
        return complete

    def _use_prefix(self, keep: int) -> None:
        """From now on let decord read a copy of the file cut before video packet ``keep``
        (a clean, shorter AVI: nothing left for the decoder or its read-ahead to fail on)."""
        data = self.path.read_bytes()
        chunks = avi_video_packets(data, self._avi.video_stream) if self._avi and self._avi.video_stream is not None else None
        if not chunks or keep >= len(chunks):
            raise VideoTruncatedError(self.path, f"cannot isolate its first {keep} packets", _FIX_REDOWNLOAD)
        if self._prefix_copy is None:
            self._prefix_copy = tempfile.TemporaryDirectory(prefix="lvs_video_")
        self._vr = None  # decord may still have the previous copy open
        self._source = _write_prefix(Path(self._prefix_copy.name) / f"prefix{self.path.suffix}", data, chunks[keep][0])
        self._sequential_only = True  # the copy has no idx1
        self._reopen()
        if len(self._require_open()) != keep:
            raise VideoTruncatedError(self.path, f"a copy cut after {keep} packets holds {len(self._require_open())}",
                                      _FIX_REDOWNLOAD)
        self._clamped = True

    def _problem(self, error: VideoUnreadableError | VideoTruncatedError, *, key: str) -> None:
        """Raise ``error`` if strict, else log it once per reader as a warning."""
        if self.strict:
            raise error
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s (strict=False: continuing)", error)

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
                                          "frames that decode", _FIX_REDOWNLOAD)
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
                    f"frames or just after them)" + _detail(errors),
                    _FIX_REDOWNLOAD + "; strict=False accepts the frames as decoded",
                ),
                key="decode",
            )
        self._shape = (int(frames.shape[1]), int(frames.shape[2]))
        return frames

    def _new_log_errors(self) -> list[str]:
        """FFmpeg errors logged since the last call (or since opening): this file's."""
        errors = _LOG_TAP.errors_since(self._log_mark)
        self._log_mark = _LOG_TAP.mark()
        return errors

    def _get_batch(self, idx: np.ndarray) -> torch.Tensor:
        """decord's get_batch, or for sequential-only sources a forward run over
        [position, max(idx)] (restarting from frame 0 to go back) from which idx is picked."""
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

    def _decode(self, idx: np.ndarray) -> torch.Tensor:
        """``get_batch``, with a defined outcome when a packet does not decode.

        decord raises as soon as its decoder thread fails on a packet, and its demuxer runs
        ahead of the requested frames, so a read of good frames close to a bad packet fails
        or succeeds from run to run. On the first failure the first undecodable frame ``K``
        is measured (AVI: bisection on copies of the file cut after ``t`` packets; a copy
        decodes fully iff its ``t`` packets do, with no read-ahead left to race) and decord
        switches to the copy cut at ``K``. Then a read fails iff it needs a frame >= ``K``:
        with ``strict`` as :class:`VideoTruncatedError`; without, ``num_frames`` becomes ``K``.
        Other containers: every read after the failure raises.
        """
        try:
            return self._get_batch(idx)
        except DECORDError as e:
            error = e
        detail = _decord_message(str(error))
        if is_frame_size_failure(str(error)):  # decord's own limitation, not damage: no bisection
            self._reopen()
            raise frame_size_error(self.path, detail) from error
        k = self._decodable_prefix()
        self._reopen()  # decord's decoder state after an error is not to be trusted
        if k is None:
            raise VideoTruncatedError(
                self.path, f"a packet does not decode (decord: {detail}); decord stops at it and reads ahead of "
                "the requested frames, so reads of earlier frames of this file can fail too", _FIX_REDOWNLOAD) from error
        reason = f"the container indexes {self.num_frames} frames but only the first {k} decode (decord: {detail})"
        if k == 0:
            raise VideoEmptyError(self.path, reason, _FIX_REDOWNLOAD) from error
        truncation = VideoTruncatedError(self.path, reason, _FIX_REDOWNLOAD + "; strict=False uses the frames that decode")
        if k < self.num_frames:
            self._use_prefix(k)
            if self.strict:  # num_frames stays what the container says; reads past k raise
                self._truncation, self._decodable_count = truncation, k
            else:
                logger.warning("%s: %s (strict=False: using the first %d frames)", self.path, reason, k)
                self.num_frames = k
        if int(idx.max()) >= k:
            raise truncation from error
        try:
            return self._get_batch(idx)
        except DECORDError as e:  # every frame decodes in a clean copy, yet not here: give up
            raise VideoUnreadableError(self.path, f"decord fails on frames that decode sequentially "
                                       f"(decord: {_decord_message(str(e))})", _FIX_REDOWNLOAD) from e

    def _decodable_prefix(self) -> int | None:
        """Number of leading frames that decode (AVI only; None for other containers)."""
        if self._avi is None or self._avi.video_stream is None:
            return None
        data = self.path.read_bytes()
        chunks = avi_video_packets(data, self._avi.video_stream)
        if not chunks or len(chunks) < self.num_frames:
            return None

        with tempfile.TemporaryDirectory(prefix="lvs_probe_") as tmp:
            probe = Path(tmp) / f"probe{self.path.suffix}"

            def decodes(t: int) -> bool:
                if t == 0:
                    return True
                source = _write_prefix(probe, data, chunks[t][0] if t < len(chunks) else len(data))
                try:
                    reader = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=self._num_threads)
                    reader.get_batch(np.arange(t))
                    return True
                except (DECORDError, RuntimeError, AssertionError):
                    return False
                finally:
                    reader = None  # noqa: F841 - free it now, joining its decoder thread

            lo, hi = 0, self.num_frames  # decodes(lo) holds; the answer lies in [lo, hi]
            if decodes(hi):
                lo = hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if decodes(mid) else (lo, mid)
        self._new_log_errors()  # the probes' own messages are not a finding about later reads
        return lo

    def _reopen(self) -> None:
        """A fresh decord reader; the old one is freed first, joining its decoder thread, so
        none of its late log messages can land in the fresh reader's window."""
        self._vr = None
        self._vr = self._new_decord()
        self._position = 0
        self._new_log_errors()  # opening an already validated file: its probe messages are known

    def _require_open(self) -> decord.VideoReader:
        if self._vr is None:
            raise ValueError(f"{self.path}: reader is closed")
        return self._vr

    # -- clips ------------------------------------------------------------------------------------
    def iter_clips(
        self,
        *,
        spec: ClipSpec = ClipSpec(),
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
        spec: ClipSpec = ClipSpec(),
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
        attributed to a later file) and any temporary copy. Idempotent."""
        self._vr = None
        if self._prefix_copy is not None:
            self._prefix_copy.cleanup()
            self._prefix_copy = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
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
    spec: ClipSpec = ClipSpec(),
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
    spec: ClipSpec = ClipSpec(),
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


def _write_prefix(path: Path, data: bytes, end: int) -> str:
    """Write ``data[:end]`` to ``path`` (a cut copy for decord to read); returns it as str."""
    with open(path, "wb") as fh:
        fh.write(memoryview(data)[:end])
    return str(path)


def _decord_message(text: str) -> str:
    """The useful part of a DECORDError: its last line without the "[time] file.cc:123: " prefixes."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else text
    return re.sub(r"(\[[\d:]+\]\s*\S+:\d+:\s*)+", "", last).strip()[:300]


def _detail(messages: list[str]) -> str:
    return f"; FFmpeg said: {' | '.join(messages[:3])}" if messages else ""
