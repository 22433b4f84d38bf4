"""decord's FFmpeg log, routed to Python logging: the reader's detector of concealed decode errors.

decord bundles its own libavutil (auditwheel copies it next to the package), whose log callback
this module replaces through ctypes. Error-level messages are counted, so a reader can ask which
errors were logged while it decoded (``mark()`` then ``errors_since(mark)``); every message up to
warning level goes to the ``lib.data.video.ffmpeg`` logger at DEBUG level instead of stderr
(e.g. "Failed to parse extradata" on every XVID file PyAV writes).

The callback is installed on first use (:func:`log_tap`, called by
:class:`lib.data.video.VideoReader` before it opens a file), not at import: importing the data
layer leaves FFmpeg's process-wide logging alone. At interpreter exit FFmpeg's own callback is
put back, so a decoder thread never calls into a Python that is being torn down.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import logging
import os
import threading
from pathlib import Path
from typing import Final

import decord

logger = logging.getLogger(__name__)
# The name the reader's documentation gives (and tests listen on): FFmpeg's messages about videos.
FFMPEG_LOGGER_NAME: Final[str] = "lib.data.video.ffmpeg"
ffmpeg_logger = logging.getLogger(FFMPEG_LOGGER_NAME)


class FFmpegLogTap:
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


_TAP = FFmpegLogTap()
_INSTALL_LOCK = threading.Lock()
_install_tried = False


def log_tap() -> FFmpegLogTap:
    """The process's tap, its callback installed on the first call (thread-safe; a missing
    libavutil is warned about once and leaves the tap counting nothing)."""
    global _install_tried
    if not _install_tried:
        with _INSTALL_LOCK:
            if not _install_tried:
                _TAP.install()
                _install_tried = True
    return _TAP
