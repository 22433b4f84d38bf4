"""Building a latent cache: decode in worker processes, encode on the device, one entry per video.

``build_cache(...)`` (and ``python -m lib.cache build``) runs, for the videos of this shard that
are not done yet, in canonical order: decode (DataLoader workers, uint8 frames) -> preprocess
(spatial policy) -> encode in chunks of ``batch_size`` clips **within one video** -> write the
video's entry atomically (a writer thread, so the device does not wait for fsync). Then, once
every shard is done, the merge step packs the entries (:mod:`lib.cache.merge`).

Determinism: a video's encoder batches are a function of that video alone (its clips split at
fixed multiples of ``batch_size``), never of where a run was interrupted or how videos were spread
over workers and shards, because float results of a convolution change with the batch they are
computed in. Samples use per-clip seeded CPU generators. So on one device type with one thread
count, a resumed or sharded build is bit-identical to an uninterrupted one (tested on CPU).

Sharding: under ``torchrun --nproc_per_node=N -m lib.cache build ...`` (``WORLD_SIZE`` > 1) rank
``r`` takes shard ``r`` of ``N`` (device ``cuda:LOCAL_RANK`` when CUDA is there), the ranks meet at
a gloo barrier and rank 0 merges. Without torchrun, ``num_shards``/``shard_index`` do the same by
hand; the shard that finds every video done merges (or run ``python -m lib.cache merge DIR``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import torch

from lib.cache.decode import DecodeSettings
from lib.cache.encoders import make_encoder
from lib.cache.errors import CacheError, StaleCacheError
from lib.cache.key import key_hash
from lib.cache.manifest import claim, is_done, make_key
from lib.cache.merge import INDEX_NAME, collect, merge_cache, read_manifest
from lib.cache.plan import CachePlan, make_plan
from lib.cache.runner import BuildSummary, run_shard
from lib.data.clips import ClipSpec, SamplingMode
from lib.data.sources import resolve_dataset_root
from lib.data.spatial import SpatialPolicy
from lib.data.ucf101 import SPLIT_NAMES
from lib.paths import resolve_path

log = logging.getLogger(__name__)
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}


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


def build_cache(
    *,
    data_root: str | os.PathLike[str],
    vae_source: str,
    out_dir: str | os.PathLike[str],
    fold: int | Sequence[int] = 1,
    splits: Sequence[str] = SPLIT_NAMES,
    val_fraction: float = 0.1,
    val_seed: int = 0,
    clip_mode: SamplingMode = "all",
    clip_seed: int = 0,
    num_frames: int = 16,
    target_fps: float = 16.0,
    spatial: SpatialPolicy | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    device: str = "auto",
    dtype: str = "float32",
    storage_dtype: str = "float16",
    content_features: bool = False,
    sample: bool = False,
    sample_seed: int = 0,
    logvar: bool = False,
    layer_norm: bool = False,
    pool_shape: Sequence[int] | None = None,
    init_seed: int = 0,
    preprocess: str = "auto",
    threads: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    retry_failed: bool = False,
    replace_stale: bool = False,
    merge: bool = True,
    progress: bool = True,
) -> BuildSummary:
    """Build (or resume, or finish) the cache in ``out_dir``; see the module docstring.

    ``data_root``: a UCF101-layout root ("" = the synthetic smoke set). ``vae_source``: anything
    ``load_reducio`` accepts, ``random:<preset>`` (random init seeded by ``init_seed``, for timing)
    or ``pooled-pixels`` (the pixel control, ``pool_shape`` or the rule of
    :func:`lib.cache.encoders.pooled_shape`). ``spatial``: default ``input_policy(vae)`` (the
    study's 224x288 bucket for pooled pixels). ``preprocess``: ``"workers"`` (CPU, in the decode
    workers), ``"device"`` (in this process, on the encoder's device) or ``"auto"`` (workers for a
    CPU encoder, else device). ``threads``: torch intra-op threads while encoding (CPU float results
    depend on it; torchrun sets 1); default on CPU: the cores left after ``num_workers``, at most
    torch's default. ``replace_stale``: when ``out_dir`` holds a cache of another key, delete it and
    build anew (logged with the differences) instead of raising StaleCacheError. Returns a
    :class:`BuildSummary`.
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {storage_dtype!r}")
    if preprocess not in ("auto", "workers", "device"):
        raise ValueError(f"preprocess must be auto, workers or device, got {preprocess!r}")
    dist_env = _dist_env()
    if dist_env is not None:
        if num_shards != 1:
            raise ValueError("under torchrun the ranks are the shards: drop --num-shards/--shard-index")
        shard_index, num_shards = dist_env[0], dist_env[1]
    dev = _resolve_device(device, dist_env[2] if dist_env else None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # pinned-memory and autocast state of this rank on its own GPU
    if threads is None and dev.type == "cpu":
        # OpenMP threads that compete with the decode workers (or other jobs) for cores spin and
        # slow the encoder down many times over; leave the workers their cores.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, min(torch.get_num_threads(), cores - num_workers))
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _build(cache_dir=resolve_path(out_dir), data_root=data_root, vae_source=vae_source, fold=fold,
                      splits=splits, val_fraction=val_fraction, val_seed=val_seed, clip_mode=clip_mode,
                      clip_seed=clip_seed, num_frames=num_frames, target_fps=target_fps, spatial=spatial,
                      batch_size=batch_size, num_workers=num_workers, dev=dev, dtype=dtype,
                      storage_dtype=storage_dtype, content_features=content_features, sample=sample,
                      sample_seed=sample_seed, logvar=logvar, layer_norm=layer_norm, pool_shape=pool_shape,
                      init_seed=init_seed, preprocess=preprocess, num_shards=num_shards, shard_index=shard_index,
                      dist_env=dist_env, retry_failed=retry_failed, replace_stale=replace_stale, merge=merge,
                      progress=progress)
    finally:
        torch.set_num_threads(previous_threads)


def _build(*, cache_dir: Path, data_root: str | os.PathLike[str], vae_source: str, fold: int | Sequence[int],
           splits: Sequence[str], val_fraction: float, val_seed: int, clip_mode: SamplingMode, clip_seed: int,
           num_frames: int, target_fps: float, spatial: SpatialPolicy | None, batch_size: int, num_workers: int,
           dev: torch.device, dtype: str, storage_dtype: str, content_features: bool, sample: bool, sample_seed: int,
           logvar: bool, layer_norm: bool, pool_shape: Sequence[int] | None, init_seed: int, preprocess: str,
           num_shards: int, shard_index: int, dist_env: tuple[int, int, int] | None, retry_failed: bool,
           replace_stale: bool, merge: bool, progress: bool) -> BuildSummary:
    root = resolve_dataset_root(os.fspath(data_root))
    folds = (fold,) if isinstance(fold, int) else tuple(fold)
    plan = make_plan(root, folds=folds, splits=splits, val_fraction=val_fraction, val_seed=val_seed)
    encoder = make_encoder(vae_source, device=dev, dtype=dtype, sample=sample, sample_seed=sample_seed, logvar=logvar,
                           layer_norm=layer_norm, content_features=content_features, pool_shape=pool_shape,
                           init_seed=init_seed)
    spatial = spatial if spatial is not None else encoder.default_spatial()
    spec = ClipSpec(num_frames=num_frames, target_fps=target_fps)
    key = make_key(encoder=encoder, spatial=spatial, spec=spec, clip_mode=clip_mode, clip_seed_value=clip_seed,
                   storage_dtype=storage_dtype, sample=sample, sample_seed=sample_seed, logvar=logvar,
                   layer_norm=layer_norm, content_features=content_features, plan=plan)
    khash = key_hash(key)
    provenance = {"dataset_root": str(root), "encoder": encoder.provenance(),
                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        claim(cache_dir, key, plan, provenance)
    except StaleCacheError as err:
        if not replace_stale or dist_env is not None:  # ranks must not delete under each other
            raise
        log.warning("%s; replace_stale: deleting it and building anew", err)
        shutil.rmtree(cache_dir)
        claim(cache_dir, key, plan, provenance)
    summary = BuildSummary(out_dir=cache_dir, complete=False, shard=(shard_index, num_shards), num_videos=len(plan.videos),
                           videos_this_run=0, clips_this_run=0, failures_this_run=0, device=str(dev))
    index = cache_dir / INDEX_NAME
    if not (index.is_file() and json.loads(index.read_text()).get("key_hash") == khash):
        pending = [job for job in plan.shard(shard_index, num_shards) if not is_done(cache_dir, job, khash, retry_failed)]
        where = preprocess if preprocess != "auto" else ("workers" if dev.type == "cpu" else "device")
        settings = DecodeSettings(spec=spec, mode=clip_mode, clip_seed=clip_seed,
                                  spatial=spatial if where == "workers" else None)
        run_shard(cache_dir, pending, settings, spatial, encoder, summary, khash=khash, batch_size=batch_size,
             num_workers=num_workers, storage=STORAGE_DTYPES[storage_dtype], sample_seed=sample_seed,
             progress=progress, threads=torch.get_num_threads())
        _finish_shards(cache_dir, plan, dist_env, merge=merge)
    if index.is_file():
        from lib.cache.reader import open_cache

        cache = open_cache(cache_dir)
        summary.complete, summary.num_clips, summary.failures = True, cache.num_clips, list(cache.failures)
    return summary


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
