"""Building a latent cache: decode in worker processes, encode on the device, one entry per video.

``build_cache(spec, out_dir, options)`` (and ``python -m lib.cache build``) runs, for the videos of this shard that
are not done yet, in canonical order: decode (DataLoader workers, uint8 frames) -> preprocess
(spatial policy) -> encode in chunks of ``batch_size`` clips **within one video** -> write the
video's entry atomically (a writer thread, so the device does not wait for fsync). Then, once
every shard is done, the merge step packs the entries (:mod:`lib.cache.merge`).

Determinism: a video's encoder batches are a function of that video alone (its clips split at
fixed multiples of ``batch_size``), never of where a run was interrupted or how videos were spread
over workers and shards, because float results of a convolution change with the batch they are
computed in. Samples use per-clip seeded CPU generators. So on one device type with one thread
count, a resumed or sharded build is bit-identical to an uninterrupted one (tested on CPU).

Resuming checks more than the key: a finished cache is redone for every video whose source file
changed since it was encoded (same size, other modification time or content hash: the key
covers sizes only; see :mod:`lib.cache.sources`), ``retry_failed`` decodes recorded failures
again even after the merge, and lost cost figures (``build_stats.json``) are summed again from
the entries. Two builds on one folder share the work through per-video claims
(:mod:`lib.cache.claims`). ``replace_stale`` builds a new cache beside a stale one and swaps it
in (:mod:`lib.cache.replace`); by default a stale cache is an error saying what differs.

Sharding: under ``torchrun --nproc_per_node=N -m lib.cache build ...`` (``WORLD_SIZE`` > 1) rank
``r`` takes shard ``r`` of ``N`` (device ``cuda:LOCAL_RANK`` when CUDA is there), the ranks meet at
a gloo barrier and rank 0 merges. Without torchrun, ``num_shards``/``shard_index`` do the same by
hand; the shard that finds every video done merges (or run ``python -m lib.cache merge DIR``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import torch

from lib.cache.claims import ClaimOwner, held_by_other
from lib.cache.decode import DecodeSettings
from lib.cache.encoders import make_encoder
from lib.cache.errors import CacheError, StaleCacheError
from lib.cache.key import describe_differences, key_hash
from lib.cache.manifest import claim, is_done, make_key
from lib.cache.merge import BUILD_STATS_NAME, INDEX_NAME, collect, merge_cache, read_manifest, restore_build_stats
from lib.cache.plan import CachePlan, failure_path, make_plan
from lib.cache.replace import recover, replacement_dir, swap_in
from lib.cache.runner import BuildSummary, ShardSettings, run_shard
from lib.cache.sources import check_sources, recorded_sources
from lib.cache.spec import DEFAULT_BUILD_OPTIONS, PREPROCESS_PLACES, BuildOptions, CacheSpec
from lib.data.sources import resolve_dataset_root
from lib.data.video import DEFAULT_MAX_BATCH_BYTES
from lib.paths import ensure_writable_dir, resolve_path

log = logging.getLogger(__name__)
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
# The batch budget: the most bytes of frames a decode worker hands over at once (a part of a
# video, at least one clip) and decodes per decord call, whatever the video's length or size.
MAX_PART_BYTES = DEFAULT_MAX_BATCH_BYTES


def _dist_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) under torchrun with more than one process, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def _resolve_device(device: str, local_rank: int | None) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and local_rank is not None:
        dev = torch.device("cuda", local_rank)
    return dev


def build_cache(spec: CacheSpec, out_dir: str | os.PathLike[str], options: BuildOptions = DEFAULT_BUILD_OPTIONS,
                ) -> BuildSummary:
    """Build (or resume, or finish) the cache ``spec`` describes in ``out_dir``; see the module docstring.

    ``spec`` decides what is stored and is the source of the cache key; ``options`` only decide
    how this run goes (:mod:`lib.cache.spec`). Returns a :class:`BuildSummary`.
    """
    _validate(spec, options, out_dir)
    dist_env = _dist_env()
    if dist_env is not None:
        if options.num_shards != 1:
            raise ValueError("under torchrun the ranks are the shards: drop --num-shards/--shard-index")
        options = replace(options, shard_index=dist_env[0], num_shards=dist_env[1])
    dev = _resolve_device(options.device, dist_env[2] if dist_env else None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # pinned-memory and autocast state of this rank on its own GPU
    threads = options.threads
    if threads is None and dev.type == "cpu":
        # Leave the decode workers their cores: their CPU resizing at the full 224x288 geometry
        # makes a worker 4.5x slower than decoding alone. Where decoding is light (the default
        # study's 64x96), num_workers 0 is faster: it gives the encoder every core (docs/results.md).
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, min(torch.get_num_threads(), cores - options.num_workers))
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _build(resolve_path(out_dir), spec, options, dev=dev, dist_env=dist_env)
    finally:
        torch.set_num_threads(previous_threads)


def _validate(spec: CacheSpec, options: BuildOptions, out_dir: str | os.PathLike[str]) -> None:
    where = Path(out_dir) if os.fspath(out_dir) else Path(".")
    if options.batch_size < 1 or options.num_workers < 0:
        raise CacheError(where, f"batch_size must be >= 1 and num_workers >= 0, got {options.batch_size} and "
                         f"{options.num_workers}",
                         "pass --batch-size 1 or more (8 is the default) and --num-workers 0 or more")
    if spec.storage_dtype not in STORAGE_DTYPES:
        raise CacheError(where, f"storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {spec.storage_dtype!r}",
                         "pass --storage-dtype float16 or float32")
    if options.preprocess not in PREPROCESS_PLACES:
        raise CacheError(where, f"preprocess must be auto, workers or device, got {options.preprocess!r}",
                         "pass --preprocess auto, workers or device")


def _build(cache_dir: Path, spec: CacheSpec, options: BuildOptions, *, dev: torch.device,
           dist_env: tuple[int, int, int] | None) -> BuildSummary:
    root = resolve_dataset_root(os.fspath(spec.data_root))
    plan = make_plan(root, folds=spec.folds, splits=spec.splits, val_fraction=spec.val_fraction, val_seed=spec.val_seed)
    encoder = make_encoder(spec.vae_source, device=dev, dtype=spec.dtype, sample=spec.sample,
                           sample_seed=spec.sample_seed, logvar=spec.logvar, layer_norm=spec.layer_norm,
                           content_features=spec.content_features, pool_shape=spec.pool_shape, init_seed=spec.init_seed)
    spatial = spec.spatial if spec.spatial is not None else encoder.default_spatial()
    key = make_key(spec, encoder=encoder, spatial=spatial, plan=plan)
    khash = key_hash(key)
    provenance = {"dataset_root": str(root), "encoder": encoder.provenance(),
                  "created": datetime.now(UTC).isoformat(timespec="seconds")}
    summary = BuildSummary(out_dir=cache_dir, complete=False, shard=(options.shard_index, options.num_shards),
                           num_videos=len(plan.videos), videos_this_run=0, clips_this_run=0, failures_this_run=0,
                           device=str(dev))
    target = _claim_target(cache_dir, key, plan, provenance, options, dist_env, summary)
    if not _finished_and_current(target, plan, khash, options, summary):
        jobs = plan.shard(options.shard_index, options.num_shards)
        if options.retry_failed:
            summary.retried_failures += sum(1 for job in jobs if failure_path(target, job.video_id).is_file())
        where = options.preprocess if options.preprocess != "auto" else ("workers" if dev.type == "cpu" else "device")
        settings = DecodeSettings(spec=spec.clip_spec, mode=spec.clip_mode, clip_seed=spec.clip_seed,
                                  spatial=spatial if where == "workers" else None, max_part_bytes=MAX_PART_BYTES,
                                  content_hash=options.content_hash)
        shard = ShardSettings(khash=khash, batch_size=options.batch_size, num_workers=options.num_workers,
                              storage=STORAGE_DTYPES[spec.storage_dtype], sample_seed=spec.sample_seed,
                              progress=options.progress, threads=torch.get_num_threads(),
                              owner=ClaimOwner.this_process())
        _encode_until_done(target, jobs, lambda pending: run_shard(target, pending, settings, spatial, encoder,
                                                                   summary, shard),
                           khash=khash, options=options, summary=summary, owner=shard.owner)
        _finish_shards(target, plan, dist_env, merge=options.merge)
    if target != cache_dir and (target / INDEX_NAME).is_file():
        swap_in(cache_dir, target)
    if (cache_dir / INDEX_NAME).is_file() and read_manifest(cache_dir)["key_hash"] == khash:
        from lib.cache.reader import open_cache

        cache = open_cache(cache_dir)
        summary.complete, summary.num_clips, summary.failures = True, cache.num_clips, list(cache.failures)
    return summary


def _claim_target(cache_dir: Path, key: dict[str, Any], plan: CachePlan, provenance: dict[str, Any],
                  options: BuildOptions, dist_env: tuple[int, int, int] | None, summary: BuildSummary) -> Path:
    """The folder this build writes into: ``cache_dir``, or beside it when replacing a stale cache."""
    khash = key_hash(key)
    recover(cache_dir, khash)
    ensure_writable_dir(cache_dir, what="the cache folder", fix="choose a writable --out folder", error=CacheError)
    try:
        claim(cache_dir, key, plan, provenance)
        return cache_dir
    except StaleCacheError as err:
        if not options.replace_stale:
            raise
        if dist_env is not None:  # ranks would race for the swap
            raise StaleCacheError(cache_dir, err.reason, "replace_stale is not available under torchrun: run the "
                                  "build once without torchrun (or --num-shards), or build into a new --out folder",
                                  differences=err.differences) from err
        summary.replaced = describe_differences(err.differences)
        target = replacement_dir(cache_dir, khash)
        log.warning("%s: %s; replace_stale: building the new cache beside it in %s (swapped in when finished)",
                    cache_dir, summary.replaced, target)
        claim(target, key, plan, provenance)
        return target


def _finished_and_current(target: Path, plan: CachePlan, khash: str, options: BuildOptions,
                          summary: BuildSummary) -> bool:
    """Whether the finished cache in ``target`` needs no work; when it does (changed sources,
    failures to retry) its index is removed so the build redoes exactly that and merges again."""
    index = target / INDEX_NAME
    try:
        current = index.is_file() and json.loads(index.read_text()).get("key_hash") == khash
    except ValueError:
        current = False  # a damaged index: the merge writes it again
    if not current:
        return False
    recorded = recorded_sources(target)
    found = check_sources((job.video_id, job.path, recorded[job.video_id]) for job in plan.videos
                          if job.video_id in recorded)
    if found.changed:
        summary.sources_changed = [f"{c.path} ({c.detail})" for c in found.changed]
        log.warning("%s: %d source video(s) changed since they were encoded (%s); re-encoding them", target,
                    len(found.changed), found.describe())
        index.unlink()
        return False
    touched = [job for job in plan.videos if recorded.get(job.video_id, {}).get("source_mtime_ns") not in
               (None, job.source_mtime_ns)]
    if touched:  # same bytes by their recorded sha256: record the new times (entries and index)
        summary.notes.append(f"{len(touched)} source video(s) have new modification times but unchanged content "
                             "(sha256): their times were updated")
        index.unlink()
        return False
    has_failures = any(failure_path(target, job.video_id).is_file() for job in plan.videos)
    if options.retry_failed and has_failures:
        index.unlink()
        return False
    if options.retry_failed:
        summary.notes.append("retry_failed: this finished cache records no failure; nothing to retry")
    if not _build_stats_complete(target) and restore_build_stats(target) is not None:
        summary.notes.append(f"{BUILD_STATS_NAME} was missing or incomplete: cost figures summed again from the "
                             "entries")
    return True


# How often a build polls for videos another build on the same folder holds.
CLAIM_POLL_S = 1.0


def _encode_until_done(target: Path, jobs: list[Any], encode: Callable[[list[Any]], None], *, khash: str,
                       options: BuildOptions, summary: BuildSummary, owner: ClaimOwner) -> None:
    """Encode the shard's videos that are not done; wait for those another live build holds, and
    take over the ones whose build died, so that the build returns with every video of its shard
    done (or the other build's merged index in place) instead of a half-finished cache."""
    waiting_logged, attempted, retry_failed = False, set(), options.retry_failed
    while not (target / INDEX_NAME).is_file():
        first_round = not attempted
        pending = [job for job in jobs if not is_done(target, job, khash, retry_failed)]
        retry_failed = False  # a failure recorded in this build is final for it
        # the first round hands every pending video to the encoder, which skips (and counts) the held ones
        mine = pending if first_round else [job for job in pending if job.video_id not in attempted
                                            and not held_by_other(target, job.video_id, owner)]
        if mine:
            attempted.update(job.video_id for job in mine)
            encode(mine)
            if not options.wait_for_others:
                return
            # a video another build claimed first was skipped, not attempted: retaken if that build dies
            attempted.difference_update(job.video_id for job in mine if held_by_other(target, job.video_id, owner))
            continue
        if not any(held_by_other(target, job.video_id, owner) for job in pending):
            return  # nothing left that this build could do or wait for
        if not waiting_logged:
            log.info("%s: waiting for another build on this folder (%d video(s) it holds)", target, len(pending))
            waiting_logged = True
        time.sleep(CLAIM_POLL_S)


def _build_stats_complete(cache_dir: Path) -> bool:
    try:
        stats = json.loads((cache_dir / BUILD_STATS_NAME).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(stats, dict):
        return False
    return bool(stats.get("encode_seconds")) or not stats.get("clips")


def _finish_shards(cache_dir: Path, plan: CachePlan, dist_env: tuple[int, int, int] | None, *, merge: bool) -> None:
    """Wait for the other ranks (torchrun) or check whether every video is done, then merge."""
    if dist_env is not None:
        import torch.distributed as dist

        created = not dist.is_initialized()
        if created:
            dist.init_process_group("gloo", timeout=timedelta(hours=12))  # shards may finish far apart
        try:
            dist.barrier()
            if dist.get_rank() == 0 and merge:
                merge_cache(cache_dir)
            dist.barrier()  # every rank returns with the cache finished
        finally:
            if created:
                dist.destroy_process_group()
        return
    if not merge:
        return
    try:
        collect(cache_dir, read_manifest(cache_dir))
    except CacheError as err:
        log.info("not merging yet: %s", err)
        return
    merge_cache(cache_dir)
