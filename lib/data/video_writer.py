"""Write RGB frame arrays to video files (PyAV/FFmpeg), atomically.

Used by the synthetic dataset (MPEG-4 Part 2 in AVI with the XVID tag, like UCF101) and by
tests that need lossless videos with known pixels (FFV1 or raw BGR in AVI decode bit-exactly
through decord, because no YUV conversion happens).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Codec:
    """An FFmpeg encoder setting. ``lossless`` codecs round-trip RGB uint8 exactly."""

    name: str  # FFmpeg encoder name
    pix_fmt: str  # storage pixel format
    lossless: bool
    codec_tag: str | None = None  # FourCC written in the container
    qscale: int | None = None  # fixed quantiser (mpeg4: 2 = best .. 31); None = encoder default
    options: tuple[tuple[str, str], ...] = ()  # encoder private options


CODECS: dict[str, Codec] = {
    # UCF101's own codec family (Xvid = MPEG-4 Part 2 ASP). qscale 4 ~ visually clean at 320x240.
    "xvid": Codec("mpeg4", "yuv420p", lossless=False, codec_tag="XVID", qscale=4, options=(("g", "25"),)),
    # Lossless, compressed; stored as BGR0 so decode to RGB is a byte shuffle (bit-exact).
    "ffv1": Codec("ffv1", "bgr0", lossless=True),
    # Lossless, uncompressed (largest, fastest).
    "rawvideo": Codec("rawvideo", "bgr24", lossless=True),
}


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    *,
    fps: float | Fraction,
    codec: str = "xvid",
) -> Path:
    """Encode RGB frames to ``path`` atomically (temp file + rename: no half-written file).

    ``frames``: array (T, H, W, 3) or an iterable of (H, W, 3) arrays, uint8 RGB. H and W must be
    even for 4:2:0 codecs. The container is chosen from the suffix (``.avi`` recommended).
    The file gets the permissions a plain ``open()`` would give it (``0666 & ~umask``).
    Returns the final path.
    """
    import av  # local import: only writers need PyAV

    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; known: {sorted(CODECS)}")
    spec = CODECS[codec]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    n_written = 0
    try:
        with av.open(tmp_name, mode="w") as container:
            stream = None
            for frame in frames:
                frame = np.asarray(frame)
                if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(f"{path}: frames must be uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}")
                if stream is None:
                    stream = container.add_stream(spec.name, rate=rate)
                    stream.width, stream.height = frame.shape[1], frame.shape[0]
                    stream.pix_fmt = spec.pix_fmt
                    if spec.codec_tag:
                        stream.codec_context.codec_tag = spec.codec_tag
                    if spec.qscale is not None:
                        # Must be set on the codec context: as a private option ("qscale") the mpeg4
                        # encoder ignores it and falls back to a 200 kb/s rate limit (smeared motion).
                        stream.codec_context.qscale = spec.qscale
                    if spec.options:
                        stream.codec_context.options = dict(spec.options)
                    # One encoder thread: slice threading makes the bytes depend on the core
                    # count, and the dataset must be byte-identical on every machine.
                    stream.codec_context.thread_count = 1
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
                n_written += 1
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
            for packet in stream.encode():
                container.mux(packet)
        # mkstemp creates 0600; give the video the permissions a plain open() would (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path
