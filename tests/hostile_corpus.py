"""A small hostile corpus the tests generate: inputs a careless or unlucky user hands the toolkit.

* :func:`write_vfr_video` - a variable-frame-rate file whose timestamp steps all stay under the
  gap tolerance (25 % longer or 25 % shorter than the average period), so only drift shows it;
* :func:`write_narrow_video` - a valid video of a frame width decord cannot copy (8-48 px);
* :func:`write_raw_video` / :func:`replace_same_size` - a video overwritten with other content
  of exactly the same size (uncompressed, so the size does not depend on the content);
* :func:`flip_byte` - one flipped byte inside a file;
* :func:`read_only_dir` - a folder writes to which fail with ``EROFS`` (a read-only bind mount
  when running as root with mount rights, else ``chmod 555``; skips where neither works).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from lib.data.video_writer import write_video


def write_vfr_video(path: Path, *, slow: int = 30, fast: int = 30, slow_ms: int = 50, fast_ms: int = 30,
                    size: tuple[int, int] = (48, 64)) -> Path:
    """``slow`` frames ``slow_ms`` apart, then ``fast`` frames ``fast_ms`` apart (millisecond
    timestamps; default: an average of ~25 fps, every step under 1.5 average periods)."""
    import av

    h, w = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for step in [slow_ms] * slow + [fast_ms] * fast:
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
            t += step
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_narrow_video(path: Path, width: int, *, height: int = 32, frames: int = 20) -> Path:
    """A lossless video ``width`` pixels wide (decord 0.6.0 cannot copy 8, 16, 24 or 48)."""
    pixels = np.random.default_rng(width).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    return write_video(path, pixels, fps=25, codec="ffv1")


def write_raw_video(path: Path, *, seed: int, frames: int = 40, size: tuple[int, int] = (96, 128)) -> Path:
    """An uncompressed (BGR24 in AVI) video of seeded noise: its byte size depends on the frame
    count and size only, so two seeds give two different videos of exactly the same size."""
    pixels = np.random.default_rng(seed).integers(0, 256, (frames, *size, 3), dtype=np.uint8)
    return write_video(path, pixels, fps=25, codec="rawvideo")


def replace_same_size(path: Path, *, seed: int, keep_mtime: bool = False) -> None:
    """Overwrite a :func:`write_raw_video` file with other content of exactly its size. The new
    modification time is one second after the old one (no clash at coarse timestamps), or, with
    ``keep_mtime``, the old one (a change only a content hash can see)."""
    before = path.stat()
    frames = _raw_frame_count(path)
    write_raw_video(path, seed=seed, frames=frames, size=_raw_size(path))
    assert path.stat().st_size == before.st_size
    mtime = before.st_mtime_ns if keep_mtime else before.st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(before.st_atime_ns, mtime))


def _raw_frame_count(path: Path) -> int:
    from lib.data.avi import read_avi_header

    header = read_avi_header(path)
    assert header is not None and header.frame_count
    return header.frame_count


def _raw_size(path: Path) -> tuple[int, int]:
    from lib.data.avi import read_avi_header

    header = read_avi_header(path)
    assert header is not None and header.height and header.width
    return header.height, header.width


def flip_byte(path: Path, offset: int) -> None:
    """Invert every bit of the byte at ``offset`` (negative: from the end)."""
    with open(path, "r+b") as fh:
        fh.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
        where = fh.tell()
        value = fh.read(1)[0]
        fh.seek(where)
        fh.write(bytes([value ^ 0xFF]))


def _try_ro_bind(folder: Path) -> bool:
    if os.geteuid() != 0:
        return False
    ok = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode == 0:
        return True
    if ok:
        subprocess.run(["umount", str(folder)], capture_output=True)
    return False


@contextlib.contextmanager
def read_only_dir(folder: Path) -> Iterator[Path]:
    """``folder`` (created) made read-only for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    if _try_ro_bind(folder):
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], capture_output=True)
        return
    if os.geteuid() == 0:
        pytest.skip("running as root without mount rights: no way to make a folder read-only")
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
