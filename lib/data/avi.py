"""The AVI (RIFF) container facts decord does not expose, read from the file's bytes.

:func:`read_avi_header` gives what the ``hdrl`` list declares (frame count, frame size, the video
stream's number, an OpenDML super index); :func:`avi_has_idx1` whether the ``idx1`` index is
there (a cut file loses it); :func:`avi_video_packets` where each packet of the video stream lies
in the ``movi`` list; :func:`complete_video_packets` how many leading packets are whole; and
:func:`write_prefix` writes a copy cut before a packet. :class:`lib.data.video.VideoReader` uses
them to find truncated AVIs and to decode exactly the frames that truly decode.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


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
            if (len(head) < 24 or head[:4] != b"RIFF" or head[8:12] != b"AVI " or head[12:16] != b"LIST"
                    or head[20:24] != b"hdrl"):
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


def complete_video_packets(data: bytes, video_stream: int) -> int:
    """Leading packets of ``video_stream`` whose bytes all lie in ``data`` (0 without a ``movi`` list)."""
    complete = 0
    for off, size in avi_video_packets(data, video_stream) or []:
        if off + 8 + size > len(data):
            break
        complete += 1
    return complete


def write_prefix(path: Path, data: bytes, end: int) -> str:
    """Write ``data[:end]`` to ``path`` (a cut copy for decord to read); returns it as str."""
    with open(path, "wb") as fh:
        fh.write(memoryview(data)[:end])
    return str(path)
