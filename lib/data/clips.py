"""Clip sampling: which source frames make up each 16-frame, 16-fps clip of a video.

Sampling is done by *timestamps*, never by assuming an integer frame stride, so any source
frame rate works (UCF101 is 25 fps, phone video 29.97, film 24):

* frame ``j`` (0-based) of a clip that starts at ``s`` seconds is shown at
  ``t_j = s + j / target_fps``;
* the source frame used for ``t_j`` is the nearest one, ties rounded up:
  ``index = floor(t_j * fps + 0.5 + EPS)`` with ``EPS = 1e-6`` (in frames) so that a time that
  is mathematically on a tie (25 fps: ``t = 0.5 s`` -> 12.5 frames) does not round down just
  because ``0.5`` is not exact in binary floating point.

Source frame ``i`` thus owns the instants ``[(i - 0.5) / fps, (i + 0.5) / fps)``; a clip is
valid when every ``t_j`` maps to an index ``< num_frames``.

Sampling modes (:data:`SAMPLING_MODES`):

``"all"``
    Every non-overlapping clip in order: clip ``k`` starts at ``k * num_frames / target_fps``
    seconds (exactly ``k`` seconds for 16 frames at 16 fps); the remainder that cannot fill a
    whole clip is dropped. 0 clips for a video shorter than one clip.
``"center"``
    One clip whose middle instant sits on the middle of the video's frame timestamps.
``"random"``
    One clip whose start time is drawn uniformly from all valid start times with a seeded
    generator (same seed -> same clip).
``"official"``
    The official Reducio extractor: integer stride ``max(1, round(fps / target_fps))`` (Python's
    ``round``, i.e. ties to even, as in that script) over frame indices and consecutive
    non-overlapping clips of ``num_frames`` frames: clip ``k`` = ``k * num_frames * stride +
    j * stride``. At 25 fps the stride is 2, so a "16-fps" clip really spans 32 frames = 1.28 s.

Single-clip modes raise :class:`~lib.data.errors.VideoTooShortError` when no clip fits;
multi-clip modes return an empty list.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np

from lib.data.errors import VideoTooShortError

SamplingMode = Literal["all", "center", "random", "official"]
SAMPLING_MODES: Final[tuple[str, ...]] = get_args(SamplingMode)
SINGLE_CLIP_MODES: Final[frozenset[str]] = frozenset({"center", "random"})

# Tolerance, in frames, added before flooring: large against float error on t * fps (~1e-12
# for hour-long videos), tiny against the 1/fps grid, so it only decides exact ties.
EPS: Final[float] = 1e-6


@dataclass(frozen=True)
class ClipSpec:
    """What a clip is: ``num_frames`` frames sampled at ``target_fps`` (default 16 @ 16 fps)."""

    num_frames: int = 16
    target_fps: float = 16.0

    def __post_init__(self) -> None:
        if not isinstance(self.num_frames, int) or isinstance(self.num_frames, bool) or self.num_frames < 1:
            raise ValueError(f"ClipSpec.num_frames must be a positive int, got {self.num_frames!r}")
        if not (math.isfinite(self.target_fps) and self.target_fps > 0):
            raise ValueError(f"ClipSpec.target_fps must be a positive finite number, got {self.target_fps!r}")

    @property
    def duration(self) -> float:
        """Seconds between the start of one clip and the start of the next in ``"all"`` mode."""
        return self.num_frames / self.target_fps


@dataclass(frozen=True)
class Clip:
    """One clip: its position in the sampling (``index``), start time and source frames.

    ``index``: 0-based clip number (``k`` in ``"all"``/``"official"`` modes, 0 for single
    clips). ``start_time``: seconds from the start of the video of the clip's first sample.
    ``frame_indices``: 0-based source frame indices, ``num_frames`` long, non-decreasing
    (strictly increasing unless the source is slower than the target frame rate).
    """

    index: int
    start_time: float
    frame_indices: tuple[int, ...]

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)


def source_index(t: float, fps: float) -> int:
    """The source frame shown at time ``t`` (seconds): nearest frame, ties rounded up."""
    return math.floor(t * fps + 0.5 + EPS)


def clip_frame_indices(start_time: float, fps: float, spec: ClipSpec = ClipSpec()) -> tuple[int, ...]:
    """Source frame indices of the clip starting at ``start_time`` (see the module rule).

    Times are computed as ``start_time + j / target_fps`` for each ``j`` (not accumulated), so
    the error does not grow along the clip.
    """
    return tuple(source_index(start_time + j / spec.target_fps, fps) for j in range(spec.num_frames))


def official_stride(fps: float, spec: ClipSpec = ClipSpec()) -> int:
    """Integer frame stride of the official extractor: ``max(1, round(fps / target_fps))``."""
    return max(1, round(fps / spec.target_fps))


def max_start_time(num_frames: int, fps: float, spec: ClipSpec = ClipSpec()) -> float | None:
    """Largest start time (s) whose clip stays inside the video, or None if no clip fits.

    Clip at ``s`` is valid iff ``(s + (n-1)/target_fps) * fps + 0.5 + EPS < num_frames``; the
    returned bound keeps a further ``EPS`` margin so that it is valid despite float error.
    """
    _check_video(num_frames, fps)
    if clip_frame_indices(0.0, fps, spec)[-1] >= num_frames:
        return None  # exactly when mode "all" has no clip: the modes agree on "too short"
    return max(0.0, (num_frames - 0.5 - 2 * EPS) / fps - (spec.num_frames - 1) / spec.target_fps)


def count_clips(num_frames: int, fps: float, spec: ClipSpec = ClipSpec(), *, mode: SamplingMode = "all") -> int:
    """How many clips :func:`sample_clips` returns (0 or 1 for single-clip modes; never raises)."""
    _check_mode(mode)
    _check_video(num_frames, fps)
    if mode == "official":
        span = (spec.num_frames - 1) * official_stride(fps, spec) + 1
        step = spec.num_frames * official_stride(fps, spec)
        return 0 if num_frames < span else (num_frames - span) // step + 1
    if mode in SINGLE_CLIP_MODES:
        return int(max_start_time(num_frames, fps, spec) is not None)
    # "all": clip k's last index grows with k; count while it stays in bounds. A closed form
    # would be faster but would have to reproduce the rounding rule exactly; this is O(#clips).
    k = 0
    while source_index(k * spec.duration + (spec.num_frames - 1) / spec.target_fps, fps) < num_frames:
        k += 1
    return k


def sample_clips(
    num_frames: int,
    fps: float,
    spec: ClipSpec = ClipSpec(),
    *,
    mode: SamplingMode = "all",
    seed: int | np.random.Generator | None = None,
    path: str | os.PathLike[str] | None = None,
) -> list[Clip]:
    """The clips of a video of ``num_frames`` frames at ``fps``, following ``mode``.

    ``seed`` is required for ``"random"`` (an int or a numpy Generator; unseeded randomness
    would make a study irreproducible) and ignored otherwise. ``path`` only names the video in
    the :class:`VideoTooShortError` raised by single-clip modes when no clip fits.
    Every returned clip has indices in ``[0, num_frames)``, strictly increasing when
    ``fps >= target_fps`` (a slower source repeats frames: 10 fps sampled at 16 fps).
    """
    _check_mode(mode)
    _check_video(num_frames, fps)
    if mode == "all":
        clips = [
            Clip(k, k * spec.duration, clip_frame_indices(k * spec.duration, fps, spec))
            for k in range(count_clips(num_frames, fps, spec, mode="all"))
        ]
    elif mode == "official":
        stride = official_stride(fps, spec)
        clips = []
        for k in range(count_clips(num_frames, fps, spec, mode="official")):
            first = k * spec.num_frames * stride
            clips.append(Clip(k, first / fps, tuple(first + j * stride for j in range(spec.num_frames))))
    else:
        s_max = max_start_time(num_frames, fps, spec)
        if s_max is None:
            raise VideoTooShortError(
                path,
                f"{num_frames} frames at {fps:g} fps ({num_frames / fps:.3f} s) cannot hold one "
                f"{spec.num_frames}-frame clip at {spec.target_fps:g} fps (needs "
                f"{clip_frame_indices(0.0, fps, spec)[-1] + 1} frames) for mode {mode!r}",
                "skip this video, or use mode='all' which returns no clip for it",
            )
        if mode == "center":
            # Middle sample instant on the middle frame timestamp (N-1)/(2 fps); clamped into
            # the valid range (it can only fall outside by rounding, for near-minimal videos).
            start = (num_frames - 1) / (2 * fps) - (spec.num_frames - 1) / (2 * spec.target_fps)
        else:
            if seed is None:
                raise ValueError("mode='random' needs a seed (int or numpy Generator) for reproducibility")
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            start = float(rng.uniform(0.0, s_max)) if s_max > 0 else 0.0
        start = min(max(start, 0.0), s_max)
        clips = [Clip(0, start, clip_frame_indices(start, fps, spec))]
    for clip in clips:  # cheap invariant check: a violation is a bug here, never bad data
        idx = clip.frame_indices
        if not (0 <= idx[0] and idx[-1] < num_frames and all(a <= b for a, b in zip(idx, idx[1:]))):
            raise AssertionError(f"internal error: clip {clip} invalid for {num_frames} frames at {fps} fps")
    return clips


def union_indices(clips: list[Clip]) -> list[int]:
    """Sorted unique source indices needed by ``clips`` (what a reader decodes once)."""
    return sorted({i for clip in clips for i in clip.frame_indices})


def _check_mode(mode: str) -> None:
    if mode not in SAMPLING_MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; known: {', '.join(SAMPLING_MODES)}")


def _check_video(num_frames: int, fps: float) -> None:
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
