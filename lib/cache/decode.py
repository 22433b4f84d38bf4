"""The decode side of a cache build: one video per item, decoded in DataLoader worker processes.

Each worker owns its decord readers (``VideoReader`` with ``num_threads=1``, one video at a time)
and returns a video's clips as **uint8** frames ``(n, T, H, W, 3)`` RGB, allocated directly in
shared memory so the hand-over to the encoding process copies nothing more. Preprocessing (the
spatial policy's ``apply_to_frames``: resize, crop/pad, float conversion) then runs where the
encoder is: on the GPU when the encoder is there (a uint8 frame is a quarter of the float bytes,
and the float work is free on the device). With a CPU encoder it runs in the workers instead
(``preprocess="workers"``), so it is spread over the decode cores and overlaps the encoding; the
result is the same function of the same frames either way.

A video that cannot give a clip - missing, unreadable, corrupt, truncated, or shorter than one
clip - comes back as a failure with the typed error's message (which names the file and the fix)
instead of raising: the build records it and goes on.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import decord
import torch
from torch.utils.data import Dataset, get_worker_info

from lib.cache.plan import VideoJob
from lib.data.clips import ClipSpec, SamplingMode, sample_clips
from lib.data.errors import DataError
from lib.data.spatial import SpatialPolicy
from lib.data.video import VideoReader

# Errors that mean "this video is bad", recorded as failures. Anything else is a bug or a
# machine problem and stops the build (finished entries stay; a rerun resumes).
VIDEO_FAILURES: tuple[type[BaseException], ...] = (DataError, decord.DECORDError, OSError)


def video_clip_seed(clip_seed: int, video_id: str) -> int:
    """Seed of a video's clip draw in ``"random"`` mode: independent of order, workers and shards."""
    digest = hashlib.sha256(f"clip:{clip_seed}:{video_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class DecodeSettings:
    spec: ClipSpec
    mode: SamplingMode
    clip_seed: int
    spatial: SpatialPolicy | None  # set: preprocess in the worker (float32 out); None: uint8 out


def _empty(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker, allocated in shared memory (the queue
    then passes a handle instead of copying the frames into shared memory itself)."""
    if get_worker_info() is None:
        return torch.empty(tuple(shape), dtype=dtype)
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    return torch.empty(0, dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, tuple(shape))


def decode_video(job: VideoJob, settings: DecodeSettings) -> dict[str, Any]:
    """Decode (and optionally preprocess) every clip of one video.

    Returns a dict: ``position``, ``video_id``, ``ok``; when ok ``frames`` (uint8 (n, T, H, W, 3)
    or, preprocessed, float32 (n, 3, T, H', W') in [-1, 1]), ``preprocessed``, ``clips``
    (``[index, start_time, frame_indices]`` each), ``fps``, ``num_frames``, ``height``, ``width``;
    else ``error_type`` and ``error``. Always ``decode_seconds``.
    """
    start = time.perf_counter()
    result: dict[str, Any] = {"position": job.position, "video_id": job.video_id, "ok": False}
    seed = video_clip_seed(settings.clip_seed, job.video_id) if settings.mode == "random" else None
    try:
        with VideoReader(job.path, num_threads=1) as reader:
            result.update(fps=reader.fps, num_frames=reader.num_frames)
            expected = len(sample_clips(reader.num_frames, reader.fps, settings.spec, mode=settings.mode, seed=seed,
                                        path=job.path))
            out: torch.Tensor | None = None
            clips: list[list[Any]] = []
            for k, (clip, frames) in enumerate(reader.iter_clip_frames(spec=settings.spec, mode=settings.mode, seed=seed)):
                if k >= expected:
                    raise RuntimeError(f"{job.path}: more clips than planned ({expected})")  # a bug, not bad data
                if out is None:
                    result.update(height=int(frames.shape[1]), width=int(frames.shape[2]))
                item = settings.spatial.apply_to_frames(frames) if settings.spatial is not None else frames
                if out is None:
                    out = _empty((expected, *item.shape), item.dtype)
                out[k].copy_(item)
                clips.append([clip.index, clip.start_time, list(clip.frame_indices)])
    except VIDEO_FAILURES as err:
        result.update(error_type=type(err).__name__, error=str(err), decode_seconds=time.perf_counter() - start)
        return result
    if not clips or out is None or len(clips) != expected:
        result.update(error_type="VideoTooShortError",
                      error=(f"{job.path}: {result['num_frames']} frames at {result['fps']:g} fps "
                             f"({result['num_frames'] / result['fps']:.3f} s) hold no {settings.spec.num_frames}-frame "
                             f"clip at {settings.spec.target_fps:g} fps in mode {settings.mode!r}"),
                      decode_seconds=time.perf_counter() - start)
        return result
    result.update(ok=True, frames=out, preprocessed=settings.spatial is not None, clips=clips,
                  decode_seconds=time.perf_counter() - start)
    return result


class VideoDecodeDataset(Dataset):
    """Map-style dataset over video jobs; item ``i`` is :func:`decode_video` of ``jobs[i]``."""

    def __init__(self, jobs: Sequence[VideoJob], settings: DecodeSettings) -> None:
        self.jobs = list(jobs)
        self.settings = settings

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return decode_video(self.jobs[index], self.settings)


def identity_collate(item: dict[str, Any]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` for ``batch_size=None``: the item unchanged (no numpy conversion)."""
    return item
