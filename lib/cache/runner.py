"""The encoding loop of one build process: decoded videos in, one entry (or failure) per video out.

Decoding runs in DataLoader workers (:mod:`lib.cache.decode`); this process preprocesses where
needed, encodes each video's clips in chunks of ``batch_size`` at fixed offsets (so the batches
never depend on interruptions, workers or shards), and hands the entry to a writer thread (the
device does not wait for fsync). A stats file per process records wall, encode and decode-wait
seconds every few seconds, so the cost of a run that is killed is not lost.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lib.cache.decode import DecodeSettings, VideoDecodeDataset, identity_collate
from lib.cache.encoders import clip_seed
from lib.cache.entries import write_entry, write_failure
from lib.cache.merge import STATS_DIR
from lib.cache.plan import VideoJob, entry_path, failure_path
from lib.data.spatial import SpatialPolicy
from lib.runs import atomic_write_text

STATS_EVERY_S = 15.0  # how often a run's stats file is refreshed (wall time survives a kill -9)
MAX_PENDING_WRITES = 8


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
            lines = [f"{self.out_dir}: already complete ({self.num_clips} clips of {self.num_videos} videos); nothing to do"]
            if self.failures:
                lines.append(f"{len(self.failures)} video(s) failed:")
                lines += [f"  {video}: {reason}" for video, reason in self.failures]
            return "\n".join(lines)
        lines = [f"{self.out_dir}: {state}; shard {self.shard[0]}/{self.shard[1]}, {self.videos_this_run} videos / "
                 f"{self.clips_this_run} clips this run in {self.wall_seconds:.1f} s ({self.clips_per_second:.2f} clips/s, "
                 f"encoder busy {self.encoder_busy_fraction:.0%}, waited {self.decode_wait_seconds:.1f} s for decode) on "
                 f"{self.device}"]
        if self.failures:
            lines.append(f"{len(self.failures)} video(s) failed:")
            lines += [f"  {video}: {reason}" for video, reason in self.failures]
        return "\n".join(lines)


def _video_description(job: VideoJob, item: dict[str, Any], clip_shape: Sequence[int]) -> dict[str, Any]:
    return {"id": job.video_id, "class_name": job.class_name, "label": job.label, "group": job.group,
            "clip_number": job.clip_number, "fps": item["fps"], "num_frames": item["num_frames"],
            "height": item["height"], "width": item["width"], "source_bytes": job.source_bytes,
            "source_mtime_ns": job.source_mtime_ns, "clips": item["clips"], "clip_shape": list(clip_shape)}


def _failure_record(job: VideoJob, error_type: str, reason: str, khash: str) -> dict[str, Any]:
    return {"video": job.video_id, "error": error_type, "reason": reason, "label": job.label,
            "class_name": job.class_name, "group": job.group, "source_bytes": job.source_bytes,
            "source_mtime_ns": job.source_mtime_ns, "key_hash": khash}


def run_shard(cache_dir: Path, pending: list[VideoJob], settings: DecodeSettings, spatial: SpatialPolicy,
              encoder: Any, summary: BuildSummary, *, khash: str, batch_size: int, num_workers: int,
              storage: torch.dtype, sample_seed: int, progress: bool, threads: int) -> None:
    """Decode/encode/write the pending videos of this shard, updating ``summary`` and a stats file."""
    start = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    stats_path = cache_dir / STATS_DIR / f"run-{stamp}-{socket.gethostname()}-{os.getpid()}.json"
    dev = encoder.device
    loader = DataLoader(VideoDecodeDataset(pending, settings), batch_size=None, shuffle=False, num_workers=num_workers,
                        collate_fn=identity_collate, prefetch_factor=4 if num_workers > 0 else None,
                        pin_memory=dev.type == "cuda")
    jobs = {job.position: job for job in pending}
    writes: collections.deque[Future[None]] = collections.deque()
    last_stats = 0.0

    def save_stats(finished: bool) -> None:
        summary.wall_seconds = time.perf_counter() - start
        atomic_write_text(stats_path, json.dumps({
            "shard": list(summary.shard), "device": str(dev), "threads": threads, "num_workers": num_workers,
            "batch_size": batch_size, "preprocess": "workers" if settings.spatial is not None else "device",
            "videos": summary.videos_this_run, "clips": summary.clips_this_run, "failures": summary.failures_this_run,
            "wall_seconds": summary.wall_seconds, "encode_seconds": summary.encode_seconds,
            "decode_wait_seconds": summary.decode_wait_seconds, "finished": finished, "host": socket.gethostname(),
            "torch": torch.__version__}, indent=1, sort_keys=True) + "\n")

    bar = tqdm(total=len(pending), unit="video", disable=not progress or summary.shard[0] != 0, dynamic_ncols=True,
               desc=f"encode (shard {summary.shard[0]}/{summary.shard[1]})" if summary.shard[1] > 1 else "encode")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer") as writer:
        items = iter(loader)
        while True:
            wait_start = time.perf_counter()
            item = next(items, None)
            summary.decode_wait_seconds += time.perf_counter() - wait_start
            if item is None:
                break
            job = jobs[item["position"]]
            if item["ok"]:
                outputs, encode_s = _encode_video(item, spatial, encoder, batch_size=batch_size, sample_seed=sample_seed)
                stored = {name: value.to(storage) for name, value in outputs.items()}
                bad = [name for name, value in stored.items() if not torch.isfinite(value).all()]
                if bad:
                    item = {**item, "ok": False, "error_type": "NonFiniteOutput",
                            "error": f"{job.path}: non-finite values in {bad} after encoding and the cast to {storage} "
                                     "(encoder overflow, or values beyond float16: try storage_dtype float32 or dtype float32)"}
                else:
                    clip_shape = _clip_shape(item, spatial)
                    video = _video_description(job, item, clip_shape)
                    video.update(decode_seconds=item["decode_seconds"], encode_seconds=encode_s)
                    writes.append(writer.submit(write_entry, entry_path(cache_dir, job.video_id), stored,
                                                key_hash=khash, video=video))
                    summary.encode_seconds += encode_s
                    summary.clips_this_run += len(item["clips"])
            if not item["ok"]:
                writes.append(writer.submit(write_failure, failure_path(cache_dir, job.video_id),
                                            _failure_record(job, item["error_type"], item["error"], khash)))
                summary.failures_this_run += 1
                bar.write(f"failed: {job.video_id}: {item['error_type']}: {item['error']}")
            summary.videos_this_run += 1
            while len(writes) > MAX_PENDING_WRITES or (writes and writes[0].done()):
                writes.popleft().result()  # re-raises a failed write here
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{summary.clips_this_run / max(elapsed, 1e-9):.2f} clips/s", refresh=False)
            bar.update(1)
            if elapsed - last_stats > STATS_EVERY_S:
                last_stats = elapsed
                save_stats(False)
        for pending_write in writes:
            pending_write.result()
    bar.close()
    save_stats(True)


def _clip_shape(item: dict[str, Any], spatial: SpatialPolicy) -> tuple[int, ...]:
    """(3, T, H', W') of the preprocessed clips of a decoded video."""
    frames = item["frames"]
    if item["preprocessed"]:
        return tuple(frames.shape[1:])
    _, t, h, w, c = frames.shape  # uint8 (n, T, H, W, 3)
    return (c, t, *spatial.output_size(h, w))


def _encode_video(item: dict[str, Any], spatial: SpatialPolicy, encoder: Any, *, batch_size: int,
                  sample_seed: int) -> tuple[dict[str, torch.Tensor], float]:
    """Preprocess (when not done in the worker) and encode one video's clips in chunks of
    ``batch_size`` at fixed offsets; returns float32 CPU outputs (n rows each) and the seconds spent."""
    dev = encoder.device
    frames = item["frames"].to(dev, non_blocking=True)
    if item["preprocessed"]:
        clips = frames  # (n, 3, T, H', W') float32
    else:
        clips = torch.stack([spatial.apply_to_frames(f) for f in frames])  # uint8 (n, T, H, W, 3) -> float32
    seeds = [clip_seed(sample_seed, item["video_id"], c[0]) for c in item["clips"]]
    start = time.perf_counter()
    chunks = [encoder.encode(clips[i : i + batch_size], seeds[i : i + batch_size]) for i in range(0, len(seeds), batch_size)]
    seconds = time.perf_counter() - start  # outputs are on the CPU: the device work is finished
    return {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]}, seconds
