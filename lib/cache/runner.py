"""The encoding loop of one build process: decoded videos in, one entry (or failure) per video out.

Decoding runs in DataLoader workers (:mod:`lib.cache.decode`); this process preprocesses where
needed, encodes each video's clips in chunks of ``batch_size`` at fixed offsets (so the batches
never depend on interruptions, workers or shards), and hands the entry to a writer thread (the
device does not wait for fsync). A stats file per process records wall, encode and decode-wait
seconds every few seconds, so the cost of a run that is killed is not lost.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lib.cache.claims import ClaimOwner, release
from lib.cache.decode import DecodeSettings, VideoDecodeDataset, WorkClaims, identity_collate
from lib.cache.entries import write_entry, write_failure
from lib.cache.merge import STATS_DIR
from lib.cache.plan import VideoJob, entry_path, failure_path
from lib.cache.video_encoding import VideoEncoding, storage_cast
from lib.data.spatial import SpatialPolicy
from lib.runs import atomic_write_text

STATS_EVERY_S = 15.0  # how often a run's stats file is refreshed (wall time survives a kill -9)
MAX_PENDING_WRITES = 8
# Decoded parts queued per worker: with 4K parts of one 398 MB clip, workers x this many parts
# are in shared memory at once, so it stays small (decoding runs ahead of encoding either way).
PREFETCH_PARTS = 2


@dataclass
class BuildSummary:
    """What one ``build_cache`` call did (this process / shard) and the state of the cache."""

    out_dir: Path
    complete: bool  # merged: load_split works
    shard: tuple[int, int]
    num_videos: int  # selected (all shards)
    videos_this_run: int
    clips_this_run: int
    failures_this_run: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video, reason), whole cache when complete
    num_clips: int = 0  # in the finished cache
    wall_seconds: float = 0.0
    encode_seconds: float = 0.0  # inside encoder calls (device busy, synchronised)
    decode_wait_seconds: float = 0.0  # the encoder waited for decoded videos
    device: str = "cpu"
    videos_skipped: int = 0  # claimed (or finished) by another build on the same folder meanwhile
    sources_changed: list[str] = field(default_factory=list)  # "path (what changed)", redone by this run
    retried_failures: int = 0  # recorded failures decoded again (retry_failed)
    replaced: str = ""  # the differences of the cache this build replaced (replace_stale)
    notes: list[str] = field(default_factory=list)  # other things this run did (e.g. restored cost figures)

    @property
    def clips_per_second(self) -> float:
        return self.clips_this_run / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def encoder_busy_fraction(self) -> float:
        """Share of this run's wall time spent inside the encoder (1.0: decoding never held it up)."""
        return self.encode_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def describe(self) -> str:
        state = f"complete: {self.num_clips} clips" if self.complete else "not merged yet"
        if self.complete and self.videos_this_run == 0 and self.wall_seconds == 0:
            lines = [f"{self.out_dir}: already complete ({self.num_clips} clips of {self.num_videos} videos); "
                     "nothing to do"]
        else:
            lines = [f"{self.out_dir}: {state}; shard {self.shard[0]}/{self.shard[1]}, {self.videos_this_run} videos / "
                     f"{self.clips_this_run} clips this run in {self.wall_seconds:.1f} s ({self.clips_per_second:.2f} "
                     f"clips/s, encoder busy {self.encoder_busy_fraction:.0%}, waited {self.decode_wait_seconds:.1f} s "
                     f"for decode) on {self.device}"]
        lines += self._events()
        if self.failures:
            lines.append(f"{len(self.failures)} video(s) failed:")
            lines += [f"  {video}: {reason}" for video, reason in self.failures]
        return "\n".join(lines)

    def _events(self) -> list[str]:
        lines = []
        if self.replaced:
            lines.append(f"replaced the cache built with other settings ({self.replaced}); files the cache did not "
                         "write were kept")
        if self.sources_changed:
            lines.append(f"{len(self.sources_changed)} source video(s) changed since they were encoded, re-encoded:")
            lines += [f"  {change}" for change in self.sources_changed]
        if self.retried_failures:
            lines.append(f"retried {self.retried_failures} recorded failure(s)")
        if self.videos_skipped:
            lines.append(f"{self.videos_skipped} video(s) left to another build running on this folder (claimed by "
                         "it); the build that finishes the last video merges")
        return lines + list(self.notes)


def _failure_record(job: VideoJob, error_type: str, reason: str, khash: str, sha256: str | None) -> dict[str, Any]:
    record = {"video": job.video_id, "error": error_type, "reason": reason, "label": job.label,
              "class_name": job.class_name, "group": job.group, "source_bytes": job.source_bytes,
              "source_mtime_ns": job.source_mtime_ns, "key_hash": khash}
    return {**record, "source_sha256": sha256} if sha256 else record


@dataclass(frozen=True)
class ShardSettings:
    """How :func:`run_shard` encodes and stores (the build's settings for this process)."""

    khash: str
    batch_size: int
    num_workers: int
    storage: torch.dtype
    sample_seed: int
    progress: bool
    threads: int
    owner: ClaimOwner


def _write_and_release(write: Callable[[], None], cache_dir: Path, video_id: str, owner: ClaimOwner) -> None:
    write()
    release(cache_dir, video_id, owner)


class _StatsFile:
    """This process's ``stats/run-*.json``, refreshed every few seconds (survives a kill -9)."""

    def __init__(self, cache_dir: Path, summary: BuildSummary, settings: DecodeSettings, shard: ShardSettings,
                 device: torch.device) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.path = cache_dir / STATS_DIR / f"run-{stamp}-{socket.gethostname()}-{os.getpid()}.json"
        self.summary, self.settings, self.shard, self.device = summary, settings, shard, device
        self.start = time.perf_counter()

    def save(self, finished: bool) -> None:
        summary, shard = self.summary, self.shard
        summary.wall_seconds = time.perf_counter() - self.start
        atomic_write_text(self.path, json.dumps({
            "shard": list(summary.shard), "device": str(self.device), "threads": shard.threads,
            "num_workers": shard.num_workers, "batch_size": shard.batch_size,
            "preprocess": "workers" if self.settings.spatial is not None else "device",
            "videos": summary.videos_this_run, "clips": summary.clips_this_run, "failures": summary.failures_this_run,
            "skipped": summary.videos_skipped, "wall_seconds": summary.wall_seconds,
            "encode_seconds": summary.encode_seconds, "decode_wait_seconds": summary.decode_wait_seconds,
            "finished": finished, "host": socket.gethostname(), "torch": torch.__version__}, indent=1,
            sort_keys=True) + "\n")


def run_shard(cache_dir: Path, pending: list[VideoJob], settings: DecodeSettings, spatial: SpatialPolicy,
              encoder: Any, summary: BuildSummary, shard: ShardSettings) -> None:
    """Decode/encode/write the pending videos of this shard, updating ``summary`` and a stats file.

    Videos come in parts (:mod:`lib.cache.decode`); parts of up to ``num_workers`` videos may
    interleave, each video keeps its own :class:`~lib.cache.video_encoding.VideoEncoding`.
    """
    dev = encoder.device
    claims = WorkClaims(cache_dir, shard.owner, shard.khash)
    loader = DataLoader(VideoDecodeDataset(pending, settings, claims), batch_size=None, num_workers=shard.num_workers,
                        collate_fn=identity_collate, prefetch_factor=PREFETCH_PARTS if shard.num_workers > 0 else None,
                        pin_memory=dev.type == "cuda")
    jobs = {job.position: job for job in pending}
    open_videos: dict[int, VideoEncoding] = {}
    writes: collections.deque[Future[None]] = collections.deque()
    stats = _StatsFile(cache_dir, summary, settings, shard, dev)
    last_stats = 0.0
    bar = tqdm(total=len(pending), unit="video", disable=not shard.progress or summary.shard[0] != 0,
               dynamic_ncols=True,
               desc=f"encode (shard {summary.shard[0]}/{summary.shard[1]})" if summary.shard[1] > 1 else "encode")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer") as writer:
        items = iter(loader)
        while True:
            item = None  # the previous part goes before the next one is decoded
            wait_start = time.perf_counter()
            item = next(items, None)
            summary.decode_wait_seconds += time.perf_counter() - wait_start
            if item is None:
                break
            job = jobs[item["position"]]
            if item.get("skipped"):
                summary.videos_skipped += 1
            else:
                state = open_videos.setdefault(job.position, VideoEncoding(
                    job, spatial, encoder, batch_size=shard.batch_size, sample_seed=shard.sample_seed))
                if item["ok"]:
                    state.add(item)
                if not item["last"]:
                    continue
                del open_videos[job.position]
                write = _finish_video(cache_dir, job, item, state, summary, shard, bar)
                writes.append(writer.submit(_write_and_release, write, cache_dir, job.video_id, shard.owner))
                summary.videos_this_run += 1
            while len(writes) > MAX_PENDING_WRITES or (writes and writes[0].done()):
                writes.popleft().result()  # re-raises a failed write here
            elapsed = time.perf_counter() - stats.start
            bar.set_postfix_str(f"{summary.clips_this_run / max(elapsed, 1e-9):.2f} clips/s", refresh=False)
            bar.update(1)
            if elapsed - last_stats > STATS_EVERY_S:
                last_stats = elapsed
                stats.save(False)
        for pending_write in writes:
            pending_write.result()
    bar.close()
    stats.save(True)


def _finish_video(cache_dir: Path, job: VideoJob, last: dict[str, Any], state: VideoEncoding, summary: BuildSummary,
                  shard: ShardSettings, bar: Any) -> Callable[[], None]:
    """Encode a video's last clips and return the write of its entry (or of its failure record)."""
    sha256 = last.get("source_sha256")
    error_type, error = last.get("error_type"), last.get("error")
    if last["ok"]:
        stored, bad = storage_cast(state.finish(), shard.storage)
        if not bad:
            video = state.description()
            video.update(decode_seconds=state.decode_seconds, encode_seconds=state.encode_seconds)
            if sha256:
                video["source_sha256"] = sha256
            summary.encode_seconds += state.encode_seconds
            summary.clips_this_run += len(state.clips)
            return functools.partial(write_entry, entry_path(cache_dir, job.video_id), stored, key_hash=shard.khash,
                                     video=video)
        error_type = "NonFiniteOutput"
        error = (f"{job.path}: non-finite values in {bad} after encoding and the cast to {shard.storage} (encoder "
                 "overflow, or values beyond float16: try storage_dtype float32 or dtype float32)")
    summary.failures_this_run += 1
    bar.write(f"failed: {job.video_id}: {error_type}: {error}")
    return functools.partial(write_failure, failure_path(cache_dir, job.video_id),
                             _failure_record(job, str(error_type), str(error), shard.khash, sha256))
