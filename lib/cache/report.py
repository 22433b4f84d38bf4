"""Tables that describe a finished cache (notebook 02): splits, failures, storage, channel statistics."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lib.cache.encoders import POOLED_PIXELS
from lib.cache.errors import StaleCacheError
from lib.cache.reader import Cache
from lib.cache.spec import DEFAULT_BUILD_OPTIONS, BuildOptions, CacheSpec
from lib.paths import DATA_DIR

CACHES_DIR_NAME = "caches"
POOLED_DECODE_WORKERS = 2  # the pooled-pixels control decodes 1.3x faster with 2 workers than inline


def cache_paths(name: str) -> tuple[Path, Path]:
    """``(latent cache, pooled-pixels cache)`` folders of a study: ``data/caches/<name>/{latent,pooled_pixels}``
    (under ``LVS_DATA_DIR`` when set; git-ignored with the rest of data/)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"cache name must be a plain folder name, got {name!r}")
    base = DATA_DIR / CACHES_DIR_NAME / name
    return base / "latent", base / "pooled_pixels"


def build_study_caches(spec: CacheSpec, *, cache_name: str, options: BuildOptions = DEFAULT_BUILD_OPTIONS,
                       pooled_pixels: bool = True) -> tuple[Any, Any | None]:
    """A study's two caches (notebook 02): the latents ``spec`` describes, then the pooled-pixels
    control on the same dataset selection, clips and spatial policy. Returns ``(latent
    BuildSummary, pooled BuildSummary or None)``.

    A cache of other settings under ``cache_name`` is an error naming the differences and the
    notebook parameters that resolve it, unless ``options.replace_stale``: then the new cache is
    built beside the old one and swapped in when finished, keeping files the cache did not write.
    """
    from lib.cache.build import build_cache
    from lib.cache.reader import open_cache

    latent_dir, pooled_dir = cache_paths(cache_name)
    latent = _study_build(build_cache, spec, latent_dir, options)
    pooled = None
    if pooled_pixels:
        pooled_spec = replace(spec, vae_source=POOLED_PIXELS, spatial=open_cache(latent_dir).spatial_policy(),
                              dtype="float32", content_features=False, layer_norm=False, sample=False, logvar=False)
        # the control's "encoder" is an average pool: the build is decode-bound, so it decodes in
        # at least POOLED_DECODE_WORKERS processes whatever the latent build used
        pooled_options = replace(options, num_workers=max(options.num_workers, POOLED_DECODE_WORKERS))
        pooled = _study_build(build_cache, pooled_spec, pooled_dir, pooled_options)
    return latent, pooled


FIX_STUDY_STALE = ("set the notebook parameter cache_name to a new name (the caches of both settings are kept), or "
                   "replace_stale: true to replace this one (the new cache is built beside it and swapped in when "
                   "finished; files the cache did not write are kept); nothing was deleted")


def _study_build(build: Any, spec: CacheSpec, out_dir: Path, options: BuildOptions) -> Any:
    """``build(spec, out_dir, options)``, waiting for another build of the same cache (a second
    notebook or a CLI build beside it) rather than returning it unfinished; a stale cache's
    error says which notebook parameters fix it."""
    try:
        return build(spec, out_dir, replace(options, wait_for_others=True))
    except StaleCacheError as err:
        raise StaleCacheError(out_dir, err.reason, FIX_STUDY_STALE, differences=err.differences) from err


def split_table(cache: Cache, fold: int = 1) -> pd.DataFrame:
    """Per split of ``fold``: videos listed, cached and failed, clips, clips per video, groups."""
    failed = {f["video"] for f in cache.failure_records}
    rows = []
    for split in ("train", "val", "test"):
        if split not in cache.index["splits"].get(str(fold), {}):
            continue
        listed = cache.split_ids(split, fold)
        videos = cache.videos(split, fold)
        clips = sum(v.num_clips for v in videos)
        rows.append({"split": split, "videos listed": len(listed), "videos cached": len(videos),
                     "videos failed": sum(1 for v in listed if v in failed), "clips": clips,
                     "clips / video": round(clips / len(videos), 2) if videos else 0.0,
                     "groups": len({v.group for v in videos}), "classes": len({v.label for v in videos})})
    return pd.DataFrame(rows).set_index("split")


def failure_table(cache: Cache) -> pd.DataFrame:
    """One row per video that could not be cached, with the error type and message."""
    columns = ["video", "class_name", "group", "error", "reason"]
    return pd.DataFrame([{c: f.get(c) for c in columns} for f in cache.failure_records], columns=columns)


def storage_table(cache: Cache, pooled: Cache | None = None) -> pd.DataFrame:
    """Bytes of the same clips as source video files, raw pixels, float pixels and cached values.

    Source videos hold every frame at 25 fps (and the remainder after the last whole clip); the
    pixel rows count exactly the cached clips at the encoder's input size.
    """
    clip_values = math.prod(cache.clip_shape) if cache.clip_shape else 0
    latent_values = math.prod(cache.latent_shape)
    itemsize = np.dtype(cache.index["arrays"]["latent"]["dtype"]).itemsize
    rows: list[dict[str, Any]] = [
        {"form": "source videos (compressed files, all frames)", "bytes": cache.source_bytes},
        {"form": f"raw pixels uint8 {tuple(cache.clip_shape or ())} per clip", "bytes": cache.num_clips * clip_values},
        {"form": "pixels float32 (encoder input)", "bytes": cache.num_clips * clip_values * 4},
        {"form": f"latents {cache.index['arrays']['latent']['dtype']} {cache.latent_shape} per clip (this cache)",
         "bytes": cache.num_clips * latent_values * itemsize},
    ]
    if pooled is not None:
        pooled_itemsize = np.dtype(pooled.index["arrays"]["latent"]["dtype"]).itemsize
        rows.append({"form": f"pooled pixels {pooled.latent_shape} per clip (control)",
                     "bytes": pooled.num_clips * math.prod(pooled.latent_shape) * pooled_itemsize})
    table = pd.DataFrame(rows)
    latent_bytes = rows[3]["bytes"]
    table["MB"] = (table["bytes"] / 1e6).round(3)
    table["x latents"] = (table["bytes"] / latent_bytes).round(1) if latent_bytes else float("nan")
    return table.set_index("form")


def channel_statistics(latents: torch.Tensor) -> pd.DataFrame:
    """Per channel of ``(N, C, T, H, W)`` values: mean, std, min, max, share of |x| > 3 std."""
    x = latents.float().transpose(0, 1).reshape(latents.shape[1], -1)  # (C, N*T*H*W)
    mean, std = x.mean(dim=1), x.std(dim=1)
    outliers = ((x - mean[:, None]).abs() > 3 * std[:, None]).float().mean(dim=1)
    return pd.DataFrame({"channel": range(x.shape[0]), "mean": mean.numpy(), "std": std.numpy(),
                         "min": x.min(dim=1).values.numpy(), "max": x.max(dim=1).values.numpy(),
                         "beyond 3 std": outliers.numpy()}).set_index("channel")


def subsample(n: int, k: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``min(n, k)`` rows drawn without replacement by a seeded generator."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def nearest_neighbour_agreement(values: torch.Tensor, labels: np.ndarray, videos: np.ndarray) -> float:
    """Share of clips whose nearest other clip (Euclidean, over flattened values), taken from a
    *different video*, has the same label: a model-free check that the values carry the class.
    Clips of the same video are excluded as neighbours (they would make it trivially high)."""
    x = values.float().flatten(1)
    distances = torch.cdist(x, x)
    same_video = torch.as_tensor(videos)[:, None] == torch.as_tensor(videos)[None, :]
    distances.masked_fill_(same_video, float("inf"))
    nearest = distances.argmin(dim=1).numpy()
    valid = np.isfinite(distances.min(dim=1).values.numpy())
    return float((labels[nearest] == labels)[valid].mean()) if valid.any() else float("nan")
