"""The latent cache: every clip of a dataset encoded once, stored compactly, read in seconds.

Build (resumable, atomic per video, sharded across processes/GPUs; in Python
``build_cache(CacheSpec(data_root=..., vae_source=...), out_dir, BuildOptions(...))``)::

    python -m lib.cache build --data data/synth_default --vae checkpoints/local-default-seed0/vae.safetensors \\
        --out data/caches/default/latent
    torchrun --nproc_per_node=4 -m lib.cache build ...          # one shard per rank, rank 0 merges

Read::

    from lib.cache import load_split, open_cache
    latents, labels, video_index = load_split("data/caches/default/latent", "train", fold=1)
    cache = open_cache("data/caches/default/latent"); cache.videos("train"), cache.failures

Check and repair::

    python -m lib.cache verify data/caches/default/latent [--sources]   # every row against its digest
    python -m lib.cache repair data/caches/default/latent               # rewrites only damaged rows

Modules: :mod:`~lib.cache.build` (orchestration), :mod:`~lib.cache.spec` (what a cache is, how a
build runs), :mod:`~lib.cache.decode` (worker decoding, in bounded parts),
:mod:`~lib.cache.video_encoding` (one video's fixed batches),
:mod:`~lib.cache.runner` (the encoding loop), :mod:`~lib.cache.encoders` (VAE and pooled-pixels
encoders), :mod:`~lib.cache.entries` (per-video files), :mod:`~lib.cache.merge` (packing, folder
layout), :mod:`~lib.cache.reader` (reading), :mod:`~lib.cache.key` (cache key),
:mod:`~lib.cache.manifest` (claiming a folder), :mod:`~lib.cache.claims` (per-video claims of
builds sharing a folder), :mod:`~lib.cache.sources` (changed source videos),
:mod:`~lib.cache.integrity` and :mod:`~lib.cache.repair` (digests, verify, repair),
:mod:`~lib.cache.replace` (replacing a stale cache), :mod:`~lib.cache.plan` (selection and order),
:mod:`~lib.cache.projection` (PCA / t-SNE for the notebook).
"""

from lib.cache.build import BuildSummary, build_cache
from lib.cache.encoders import POOLED_PIXELS, pooled_shape
from lib.cache.errors import CacheError, DamagedCacheError, IncompleteCacheError, StaleCacheError
from lib.cache.merge import merge_cache
from lib.cache.reader import Cache, ClipSet, VideoEntry, load_content_features, load_split, open_cache
from lib.cache.repair import repair_cache, verify_cache
from lib.cache.spec import BuildOptions, CacheSpec

__all__ = [
    "POOLED_PIXELS",
    "BuildOptions",
    "BuildSummary",
    "Cache",
    "CacheError",
    "CacheSpec",
    "ClipSet",
    "DamagedCacheError",
    "IncompleteCacheError",
    "StaleCacheError",
    "VideoEntry",
    "build_cache",
    "load_content_features",
    "load_split",
    "merge_cache",
    "open_cache",
    "pooled_shape",
    "repair_cache",
    "verify_cache",
]
