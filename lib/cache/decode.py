"""The decode side of a cache build: videos decoded in DataLoader worker processes, in parts.

Each worker owns its decord readers (``VideoReader`` with ``num_threads=1``, one video at a time)
and returns a video's clips as **uint8** frames ``(n, T, H, W, 3)`` RGB, allocated directly in
shared memory so the hand-over to the encoding process copies nothing more. Preprocessing (the
spatial policy's ``apply_to_frames``: resize, crop/pad, float conversion) then runs where the
encoder is: on the GPU when the encoder is there (a uint8 frame is a quarter of the float bytes,
and the float work is free on the device). With a CPU encoder it runs in the workers instead
(``preprocess="workers"``), so it is spread over the decode cores and overlaps the encoding; the
result is the same function of the same frames either way.

Memory is bounded by the batch budget, never by a video's length: a video comes back in
**parts** of at most ``max_part_bytes`` of frames (at least one clip), each decoded in decord
calls of at most that many bytes, so a 60-s 4K video is a series of ~256 MB parts instead of one
23 GB buffer. :func:`iter_video_parts` yields them; the last part of a video has ``last=True``.

A video that cannot give a clip - missing, unreadable, corrupt, truncated, or shorter than one
clip - comes back as a failure (a last part with ``ok=False`` and the typed error's message,
which names the file and the fix) instead of raising: the build records it and goes on.

With a :class:`WorkClaims` (builds sharing one folder, :mod:`lib.cache.claims`), a worker
claims each video before decoding it; a video claimed by another live build, or finished by it
meanwhile, comes back as ``skipped``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import decord
import torch
from torch.utils.data import IterableDataset, get_worker_info

from lib.cache.claims import ClaimOwner, release, try_claim
from lib.cache.key import file_sha256
from lib.cache.plan import VideoJob
from lib.data.clips import ClipSpec, SamplingMode, sample_clips
from lib.data.errors import DataError
from lib.data.spatial import SpatialPolicy
from lib.data.video import DEFAULT_MAX_BATCH_BYTES, VideoReader

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
    max_part_bytes: int = DEFAULT_MAX_BATCH_BYTES  # frames per part (and per decord call), at least one clip
    content_hash: bool = False  # also record the SHA-256 of each source file


def _empty(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker, allocated in shared memory (the queue
    then passes a handle instead of copying the frames into shared memory itself)."""
    if get_worker_info() is None:
        return torch.empty(tuple(shape), dtype=dtype)
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    return torch.empty(0, dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, tuple(shape))


def _too_short(job: VideoJob, meta: dict[str, Any], settings: DecodeSettings) -> str:
    return (f"{job.path}: {meta['num_frames']} frames at {meta['fps']:g} fps "
            f"({meta['num_frames'] / meta['fps']:.3f} s) hold no {settings.spec.num_frames}-frame clip "
            f"at {settings.spec.target_fps:g} fps in mode {settings.mode!r}")


def iter_video_parts(job: VideoJob, settings: DecodeSettings) -> Iterator[dict[str, Any]]:
    """Decode (and optionally preprocess) one video's clips, in parts of bounded size.

    Every part is a dict: ``position``, ``video_id``, ``part``, ``last``, ``ok``,
    ``decode_seconds`` (of this part); when ok ``frames`` (uint8 (n, T, H, W, 3) or, preprocessed,
    float32 (n, 3, T, H', W') in [-1, 1]), ``preprocessed``, ``clips`` (``[index, start_time,
    frame_indices]`` each), ``fps``, ``num_frames``, ``height``, ``width``; a failure (always the
    last part) has ``error_type`` and ``error`` instead. The last part may carry
    ``source_sha256``.
    """
    base: dict[str, Any] = {"position": job.position, "video_id": job.video_id}
    start = time.perf_counter()
    seed = video_clip_seed(settings.clip_seed, job.video_id) if settings.mode == "random" else None
    part, meta, done = 0, {}, 0
    try:
        with VideoReader(job.path, num_threads=1) as reader:
            meta.update(fps=reader.fps, num_frames=reader.num_frames)
            expected = len(sample_clips(reader.num_frames, reader.fps, settings.spec, mode=settings.mode, seed=seed,
                                        path=job.path))
            out: torch.Tensor | None = None
            clips: list[list[Any]] = []
            frames_iter = reader.iter_clip_frames(spec=settings.spec, mode=settings.mode, seed=seed,
                                                  max_batch_bytes=settings.max_part_bytes)
            for k, (clip, frames) in enumerate(frames_iter):
                if k >= expected:
                    raise RuntimeError(f"{job.path}: more clips than planned ({expected})")  # a bug, not bad data
                meta.setdefault("height", int(frames.shape[1]))
                meta.setdefault("width", int(frames.shape[2]))
                item = settings.spatial.apply_to_frames(frames) if settings.spatial is not None else frames
                if out is None:
                    per_part = max(1, settings.max_part_bytes // (item.numel() * item.element_size()))
                    out = _empty((min(per_part, expected - k), *item.shape), item.dtype)
                out[len(clips)].copy_(item)
                del frames, item  # the decoded batch can go before the reader decodes the next one
                clips.append([clip.index, clip.start_time, list(clip.frame_indices)])
                done = k + 1
                if len(clips) == out.shape[0] and done < expected:
                    yield {**base, **meta, "ok": True, "part": part, "last": False, "frames": out, "clips": clips,
                           "preprocessed": settings.spatial is not None, "decode_seconds": time.perf_counter() - start}
                    part, out, clips, start = part + 1, None, [], time.perf_counter()
    except VIDEO_FAILURES as err:
        yield {**base, **meta, "ok": False, "part": part, "last": True, "error_type": type(err).__name__,
               "error": str(err), "decode_seconds": time.perf_counter() - start, **_hash(job, settings)}
        return
    if done == 0 or out is None or done != expected:
        yield {**base, **meta, "ok": False, "part": part, "last": True, "error_type": "VideoTooShortError",
               "error": _too_short(job, meta, settings), "decode_seconds": time.perf_counter() - start,
               **_hash(job, settings)}
        return
    yield {**base, **meta, "ok": True, "part": part, "last": True, "frames": out[: len(clips)], "clips": clips,
           "preprocessed": settings.spatial is not None, "decode_seconds": time.perf_counter() - start,
           **_hash(job, settings)}


def _hash(job: VideoJob, settings: DecodeSettings) -> dict[str, str]:
    if not settings.content_hash:
        return {}
    try:
        return {"source_sha256": file_sha256(job.path)}
    except OSError:
        return {}


def decode_video(job: VideoJob, settings: DecodeSettings) -> dict[str, Any]:
    """One video's parts joined into one dict (:func:`iter_video_parts` keys; ``frames`` of every
    clip in one tensor): for benchmarks and tests, where a whole video fits in memory."""
    parts = list(iter_video_parts(job, settings))
    last = dict(parts[-1])
    last["decode_seconds"] = sum(p["decode_seconds"] for p in parts)
    if last["ok"]:
        last["frames"] = torch.cat([p["frames"] for p in parts]) if len(parts) > 1 else last["frames"]
        last["clips"] = [c for p in parts for c in p["clips"]]
    return last


@dataclass(frozen=True)
class WorkClaims:
    """How a decode worker claims videos for its build (:mod:`lib.cache.claims`)."""

    cache_dir: Path
    owner: ClaimOwner
    key_hash: str

    def take(self, job: VideoJob) -> bool:
        """Claim ``job``; False when another live build holds it or has finished it meanwhile."""
        from lib.cache.manifest import is_finished

        if not try_claim(self.cache_dir, job.video_id, self.owner):
            return False
        if is_finished(self.cache_dir, job, self.key_hash):
            release(self.cache_dir, job.video_id, self.owner)
            return False
        return True


class VideoDecodeDataset(IterableDataset):
    """The parts of ``jobs`` (:func:`iter_video_parts`), the jobs spread round robin over the
    DataLoader workers; with ``claims``, videos another build holds are ``skipped`` parts."""

    def __init__(self, jobs: Sequence[VideoJob], settings: DecodeSettings, claims: WorkClaims | None = None) -> None:
        self.jobs = list(jobs)
        self.settings = settings
        self.claims = claims

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        jobs = self.jobs if info is None else self.jobs[info.id :: info.num_workers]
        for job in jobs:
            if self.claims is not None and not self.claims.take(job):
                yield {"position": job.position, "video_id": job.video_id, "ok": False, "last": True, "skipped": True}
                continue
            yield from iter_video_parts(job, self.settings)


def identity_collate(item: dict[str, Any]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` for ``batch_size=None``: the item unchanged (no numpy conversion)."""
    return item
