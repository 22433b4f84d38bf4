"""The merge step: pack the per-video entries of all shards into one array per output + an index.

Layout of a finished cache folder::

    cache.json          key, key hash, the plan (canonical video order, split lists); written first
    entries/...         per-video safetensors (the build's resumable unit; kept, may be deleted)
    failures/...        per-video failure records
    stats/run-*.json    per build process: device, threads, wall/encode/decode seconds
    latent.npy          (N, C, T', H', W') float16, rows = clips in canonical video order
    sample.npy, logvar.npy, content.npy (N, D)   when built with those outputs
    index.json          videos (row ranges, clips, labels, groups, fps, size, source size/mtime, a
                        digest of each array's rows), split lists, failures
    build_stats.json    summed timings for cost accounting (not part of the bit-identical result)
    claims/...          per-video claims of running builds (:mod:`lib.cache.claims`; gone once merged)

``index.json`` is written last (atomically, after ``build_stats.json``): its presence, with this
key hash, is what "finished" means. Each video's rows of each array have a digest in the index
(the entry's own, checked while packing), so ``python -m lib.cache verify`` finds a damaged row
and ``repair`` rewrites just its video. Every file except ``build_stats.json``, ``cache.json``
and ``stats/`` is a pure function of the key and the entries, so an interrupted-and-resumed or
sharded build gives byte-identical ``*.npy`` and ``index.json`` to an uninterrupted
single-process one (same encode device and thread count: float results of a CPU convolution
depend on how its reductions are split).
Merging again is harmless: the same bytes are written again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lib.cache.claims import remove_claims
from lib.cache.entries import DIGEST, array_digest, entry_digests, read_entry, read_entry_header, read_failure
from lib.cache.errors import CacheError, IncompleteCacheError
from lib.cache.plan import ENTRIES_DIR, FAILURES_DIR, entry_path, failure_path
from lib.runs import atomic_write_text

MANIFEST_NAME = "cache.json"
INDEX_NAME = "index.json"
BUILD_STATS_NAME = "build_stats.json"
STATS_DIR = "stats"
INDEX_FORMAT = "lvs-latent-cache"
ARRAY_ORDER = ("latent", "sample", "logvar", "content")
# what the index keeps of a failure record: the first six always, the source fingerprint when recorded
FAILURE_FIELDS = ("video", "error", "reason", "label", "class_name", "group", "source_bytes", "source_mtime_ns",
                  "source_sha256")


def read_manifest(cache_dir: Path) -> dict[str, Any]:
    path = cache_dir / MANIFEST_NAME
    if not path.is_file():
        raise CacheError(cache_dir, f"is not a latent cache (no {MANIFEST_NAME})",
                         "check the path, or build it: python -m lib.cache build --data DIR --vae SOURCE --out DIR")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise CacheError(path, f"unreadable ({err})", "delete the cache folder and build it again") from err


def _remove_stale_temp_files(cache_dir: Path) -> None:
    """Temp files of writes killed mid-way (``.<name>.<random>.tmp``): at merge time every video is
    done, so no build writes entries any more. Array temp files (``.<name>.<pid>.tmp``) of a merge
    still running in another live process on this host are left alone."""
    for folder in (cache_dir / ENTRIES_DIR, cache_dir / FAILURES_DIR):
        for tmp in folder.glob("**/.*.tmp") if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)
    for tmp in cache_dir.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_array(path: Path, rows: int, row_shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.memmap, Path]:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    return np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(rows, *row_shape)), tmp


def _finish_array(array: np.memmap, tmp: Path, path: Path) -> None:
    array.flush()
    del array
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def collect(
    cache_dir: Path, manifest: dict[str, Any]
) -> tuple[list[tuple[str, Path, dict[str, Any]]], list[dict[str, Any]]]:
    """Entries ``(video id, path, description)`` and failure records, in canonical order; raises
    IncompleteCacheError when a video has neither."""
    key_hash = manifest["key_hash"]
    entries, failures, missing = [], [], []
    for video_id in manifest["plan"]["videos"]:
        entry, failure = entry_path(cache_dir, video_id), failure_path(cache_dir, video_id)
        if entry.is_file():
            metadata, video = read_entry_header(entry)
            if metadata["key_hash"] != key_hash:
                raise CacheError(entry, "was written for another cache key", "delete it and rerun the build")
            entries.append((video_id, entry, video))
        elif failure.is_file():
            failures.append(read_failure(failure))
        else:
            missing.append(video_id)
    if missing:
        raise IncompleteCacheError(
            cache_dir, f"{len(missing)} of {len(manifest['plan']['videos'])} videos are not done yet "
            f"(e.g. {', '.join(missing[:3])})",
            "rerun the same build command (it resumes where it stopped); with --num-shards, run every shard")
    return entries, failures


def merge_cache(cache_dir: str | os.PathLike[str]) -> Path:
    """Pack a cache folder whose videos are all done; returns the path of ``index.json``."""
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    entries, failures = collect(cache_dir, manifest)
    if not entries:
        reasons = "; ".join(f"{f['video']}: {f['reason']}" for f in failures[:3])
        raise CacheError(cache_dir, f"no video could be cached ({len(failures)} failures, e.g. {reasons})",
                         "see failures/ for every reason; check the dataset and the VAE")
    _remove_stale_temp_files(cache_dir)
    first, _, _ = read_entry(entries[0][1])
    names = [n for n in ARRAY_ORDER if n in first]
    row_shapes = {n: tuple(first[n].shape[1:]) for n in names}
    dtypes = {n: first[n].numpy().dtype for n in names}
    total = sum(len(video["clips"]) for _, _, video in entries)
    arrays = {n: _write_array(cache_dir / f"{n}.npy", total, row_shapes[n], dtypes[n]) for n in names}
    videos, row = [], 0
    encode_s = decode_s = 0.0
    clip_shapes = set()
    try:
        for _video_id, path, _ in entries:
            metadata, _ = read_entry_header(path)
            recorded = entry_digests(metadata)
            tensors, video, _ = read_entry(path)
            n = len(video["clips"])
            digests = {}
            for name in names:
                t = tensors.get(name)
                if t is None or tuple(t.shape) != (n, *row_shapes[name]) or t.numpy().dtype != dtypes[name]:
                    got = None if t is None else (tuple(t.shape), str(t.dtype))
                    raise CacheError(path, f"output {name!r} is {got}, expected ({n}, *{row_shapes[name]}) "
                                     f"{dtypes[name]} (videos of different sizes under a pad policy cannot share "
                                     "one array)",
                                     "use a crop spatial policy (one output size), or delete this entry and rerun")
                digests[name] = array_digest(t)
                if name in recorded and recorded[name] != digests[name]:
                    raise CacheError(path, f"output {name!r} does not match the digest recorded when it was written "
                                     "(the entry file is damaged)", "delete this entry and rerun the build (it "
                                     "re-encodes that video only)")
                arrays[name][0][row : row + n] = t.numpy()
            clip_shapes.add(tuple(video["clip_shape"]))
            encode_s += video.pop("encode_seconds", 0.0)
            decode_s += video.pop("decode_seconds", 0.0)
            videos.append({**video, "row_start": row, "num_clips": n, "digests": digests})
            row += n
        for name in names:
            _finish_array(arrays[name][0], arrays[name][1], cache_dir / f"{name}.npy")
    finally:
        for _, tmp in arrays.values():
            tmp.unlink(missing_ok=True)
    plan = manifest["plan"]
    index = {
        "format": INDEX_FORMAT,
        "key": manifest["key"],
        "key_hash": manifest["key_hash"],
        "classes": plan["classes"],
        "dataset_root": plan["dataset_root"],
        "source_kind": manifest["key"]["encoder"]["kind"],
        "clip_shape": list(sorted(clip_shapes)[0]) if len(clip_shapes) == 1 else None,
        "latent_shape": list(row_shapes["latent"]),
        "arrays": {n: {"file": f"{n}.npy", "shape": [total, *row_shapes[n]], "dtype": str(dtypes[n])} for n in names},
        "num_clips": total,
        "num_videos": len(videos),
        "videos": videos,
        "splits": plan["split_lists"],
        "failures": [{k: f.get(k) for k in FAILURE_FIELDS[:6]} | {k: f[k] for k in FAILURE_FIELDS[6:] if k in f}
                     for f in failures],
        "digest": DIGEST,
    }
    # build_stats.json before index.json: index.json marks the cache finished, so a kill between
    # the two leaves an unfinished cache whose rerun merges (and writes both) again
    write_build_stats(cache_dir, encode_s, decode_s, total)
    atomic_write_text(cache_dir / INDEX_NAME, json.dumps(index, sort_keys=True, separators=(",", ":")) + "\n")
    remove_claims(cache_dir)
    return cache_dir / INDEX_NAME


def write_build_stats(cache_dir: Path, encode_seconds: float, decode_seconds: float, clips: int) -> Path:
    """Write ``build_stats.json`` (see :func:`summed_stats`) atomically."""
    path = cache_dir / BUILD_STATS_NAME
    atomic_write_text(path, json.dumps(summed_stats(cache_dir, encode_seconds, decode_seconds, clips), indent=1,
                                       sort_keys=True) + "\n")
    return path


def restore_build_stats(cache_dir: Path) -> Path | None:
    """Write ``build_stats.json`` anew from the entries' recorded seconds (a finished cache whose
    file was lost). None when the entries are gone too (nothing to sum)."""
    manifest = read_manifest(cache_dir)
    encode_s = decode_s = 0.0
    clips = found = 0
    for video_id in manifest["plan"]["videos"]:
        try:
            _, video = read_entry_header(entry_path(cache_dir, video_id))
        except (ValueError, KeyError):
            continue
        found += 1
        clips += len(video.get("clips", []))
        encode_s += float(video.get("encode_seconds", 0.0))
        decode_s += float(video.get("decode_seconds", 0.0))
    return write_build_stats(cache_dir, encode_s, decode_s, clips) if found else None


def summed_stats(cache_dir: Path, encode_seconds: float, decode_seconds: float, clips: int) -> dict[str, Any]:
    """Cost accounting: encoder time summed over entries (kept across interruptions), decode time
    summed over workers, and the wall time of every build process (stats/run-*.json)."""
    runs = []
    for path in sorted((cache_dir / STATS_DIR).glob("run-*.json")):
        try:
            runs.append(json.loads(path.read_text()))
        except ValueError:
            continue
    return {
        "clips": clips,
        "encode_seconds": encode_seconds,
        "encode_seconds_per_clip": encode_seconds / clips if clips else None,
        "decode_seconds_workers": decode_seconds,
        "wall_seconds_sum_of_processes": sum(r.get("wall_seconds", 0.0) for r in runs),
        "runs": runs,
    }
