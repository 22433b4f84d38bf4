"""How a :class:`lib.data.video.VideoReader` meets damaged containers (the rules of its docstring).

:class:`DamageChecks` is the reader's part that judges a container before and while it is read:
packet timestamps against the constant-rate grid (gaps, drift), the AVI header's frame count
against the packets (truncation), and the first frame that does not decode when decord fails
mid-read. With ``strict`` a finding raises its typed error (:mod:`lib.data.errors`); without,
it is warned about once and the reader is clamped to a copy of the file cut before the first
packet that does not decode, so the clamped video reads exactly like a clean one of that length.

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

Decode errors are seen through a log callback on decord's own FFmpeg (libavutil bundled in the
wheel; :mod:`lib.data.ffmpeg_log`, installed when the first reader opens a file), which also
keeps FFmpeg's warnings (e.g. "Failed to parse extradata" on every XVID file PyAV writes,
"packed B-frames" on DivX files) out of stderr: they go to the
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

With the PyAV stream (:mod:`lib.data.video_stream`) FFmpeg's errors come from PyAV's own log,
captured during each read, and a decoded frame whose timestamp is not the index's raises.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Final

import decord
import numpy as np
import torch

from lib.data.avi import (
    AviHeader,
    avi_has_idx1,
    avi_video_packets,
    complete_video_packets,
    read_avi_header,
    write_prefix,
)
from lib.data.errors import VideoEmptyError, VideoTruncatedError, VideoUnreadableError
from lib.data.video_checks import frame_rate_error, frame_size_error, is_frame_size_failure
from lib.data.video_stream import FrameStreamError

# The reader's own logger: these warnings are about the video it reads.
logger = logging.getLogger("lib.data.video")

DECORDError = decord.DECORDError
# A gap between consecutive packet timestamps larger than this many frame periods means
# missing frames (1.5: halfway between the regular 1 and the first gap, 2).
_GAP_TOLERANCE: Final[float] = 1.5
FIX_REDOWNLOAD: Final[str] = ("re-download or re-extract the file (compare its size/checksum with the source), or "
                              "drop it from the split")


class DamageChecks:
    """Container checks and clamping of :class:`~lib.data.video.VideoReader` (its base class).

    Every attribute used here is set by ``VideoReader.__init__``; the methods run on a reader.
    """

    path: Path
    strict: bool
    fps: float
    num_frames: int
    _avi: AviHeader | None
    _shape_hint: tuple[int, int] | None
    _sequential_only: bool
    _warned: set[str]
    _clamped: bool
    _truncation: VideoTruncatedError | None
    _decodable_count: int
    _num_threads: int
    _source: str
    _prefix_copy: tempfile.TemporaryDirectory[str] | None
    _vr: decord.VideoReader | None
    _frame_times: np.ndarray | None
    backend: str

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
            raise VideoEmptyError(self.path,
                                  f"the container holds no video packet (its header claims {claimed} frames)",
                                  FIX_REDOWNLOAD) from None
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
            self._frame_times = starts
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
                FIX_REDOWNLOAD,
            ),
            key="truncated",
        )
        if complete < 1:
            raise VideoEmptyError(self.path, f"truncated to {packets} packet(s), none complete", FIX_REDOWNLOAD)
        if complete < packets:
            self._use_prefix(complete)
        return complete

    def _complete_avi_packets(self) -> int:
        """Leading video packets whose bytes are all in the file (rule for strict=False)."""
        if self._avi is None or self._avi.video_stream is None:
            return 0
        return complete_video_packets(self.path.read_bytes(), self._avi.video_stream)

    def _use_prefix(self, keep: int) -> None:
        """From now on let decord read a copy of the file cut before video packet ``keep``
        (a clean, shorter AVI: nothing left for the decoder or its read-ahead to fail on)."""
        data = self.path.read_bytes()
        stream = self._avi.video_stream if self._avi is not None else None
        chunks = avi_video_packets(data, stream) if stream is not None else None
        if not chunks or keep >= len(chunks):
            raise VideoTruncatedError(self.path, f"cannot isolate its first {keep} packets", FIX_REDOWNLOAD)
        if self._prefix_copy is None:
            self._prefix_copy = tempfile.TemporaryDirectory(prefix="lvs_video_")
        self._vr = None  # decord may still have the previous copy open
        self._source = write_prefix(Path(self._prefix_copy.name) / f"prefix{self.path.suffix}", data, chunks[keep][0])
        self._sequential_only = True  # the copy has no idx1
        self._reopen()
        if len(self._require_open()) != keep:
            raise VideoTruncatedError(self.path, f"a copy cut after {keep} packets holds {len(self._require_open())}",
                                      FIX_REDOWNLOAD)
        self._clamped = True

    def _problem(self, error: VideoUnreadableError | VideoTruncatedError, *, key: str) -> None:
        """Raise ``error`` if strict, else log it once per reader as a warning."""
        if self.strict:
            raise error
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s (strict=False: continuing)", error)

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
        except (DECORDError, FrameStreamError) as e:
            error = e
        detail = decord_message(str(error))
        if is_frame_size_failure(str(error)):  # decord's own limitation, not damage: no bisection
            self._reopen()
            if self.backend == "decord":  # PyAV copies any frame size: read this file through it
                self.backend = "stream"
                logger.debug("%s: decord cannot copy out its frames; decoding through PyAV", self.path)
                try:
                    return self._get_batch(idx)
                except FrameStreamError as e:
                    raise frame_size_error(self.path, f"{detail}; PyAV: {e}") from e
            raise frame_size_error(self.path, detail) from error
        k = self._decodable_prefix()
        self._reopen()  # decord's decoder state after an error is not to be trusted
        if k is None:
            raise VideoTruncatedError(
                self.path, f"a packet does not decode ({self._decoder()}: {detail}); decord stops at it and reads ahead of "
                "the requested frames, so reads of earlier frames of this file can fail too", FIX_REDOWNLOAD) from error
        reason = f"the container indexes {self.num_frames} frames but only the first {k} decode ({self._decoder()}: {detail})"
        if k == 0:
            raise VideoEmptyError(self.path, reason, FIX_REDOWNLOAD) from error
        truncation = VideoTruncatedError(self.path, reason,
                                         FIX_REDOWNLOAD + "; strict=False uses the frames that decode")
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
        except (DECORDError, FrameStreamError) as e:  # every frame decodes in a clean copy, yet not here
            raise VideoUnreadableError(self.path, f"decord fails on frames that decode sequentially "
                                       f"({self._decoder()}: {decord_message(str(e))})", FIX_REDOWNLOAD) from e

    def _decoder(self) -> str:
        """Who decodes this reader's frames, for messages."""
        return "PyAV" if self.backend == "stream" else "decord"

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
                source = write_prefix(probe, data, chunks[t][0] if t < len(chunks) else len(data))
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


def decord_message(text: str) -> str:
    """The useful part of a DECORDError: its last line without the "[time] file.cc:123: " prefixes."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else text
    return re.sub(r"(\[[\d:]+\]\s*\S+:\d+:\s*)+", "", last).strip()[:300]


def detail(messages: list[str]) -> str:
    """"; FFmpeg said: ..." with the first three messages, or "" when there are none."""
    return f"; FFmpeg said: {' | '.join(messages[:3])}" if messages else ""
