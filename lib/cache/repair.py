"""Repairing a finished cache's packed arrays: only the damaged videos' rows are rewritten.

``python -m lib.cache repair DIR`` (:func:`repair_cache`) runs the full check of
:mod:`lib.cache.integrity`, then for every video whose rows do not match their recorded digest:

1. takes the rows from the video's entry when it is intact (same key, digest as recorded), or
2. re-encodes that one video with the encoder, spatial policy, clip plan, storage dtype and
   batch size the cache was built with (from its key, its manifest's provenance and its stats;
   ``vae_source``/``data_root`` point elsewhere when the weights or the videos moved), after
   checking that the source file is still the one the cache recorded,

and writes them in place. A missing or cut array file is first restored to its recorded size (a
cut one keeps its bytes), so the same path repairs it. Re-encoded rows match the originals bit
for bit on the same device type and thread count (the batches are a function of the video alone,
:mod:`lib.cache.video_encoding`); where they do not (another device), the index records the new
digests and the report says so.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.cache.decode import DecodeSettings
from lib.cache.encoders import POOLED_PIXELS, make_encoder
from lib.cache.entries import array_digest, read_entry, write_entry
from lib.cache.errors import CacheError, DamagedCacheError, StaleCacheError
from lib.cache.integrity import VerifyReport, read_layout, verify_arrays
from lib.cache.key import describe_differences, key_differences
from lib.cache.merge import INDEX_NAME, STATS_DIR, read_manifest
from lib.cache.plan import ENTRIES_DIR, VideoJob, entry_path
from lib.cache.sources import compare_source
from lib.cache.video_encoding import encode_video, storage_cast
from lib.data.clips import ClipSpec
from lib.data.spatial import make_spatial_policy
from lib.runs import atomic_write_text

log = logging.getLogger(__name__)
FIX_INDEX = "python -m lib.cache merge {dir} writes it again from the entries (or rerun the build command)"


@dataclass
class RepairReport:
    """What :func:`repair_cache` did."""

    path: Path
    damaged: dict[str, list[str]] = field(default_factory=dict)  # found before the repair
    arrays_restored: list[str] = field(default_factory=list)
    from_entries: list[str] = field(default_factory=list)
    re_encoded: list[str] = field(default_factory=list)
    digests_updated: list[str] = field(default_factory=list)  # re-encoded rows not bit-identical to the originals

    def describe(self) -> str:
        if not self.damaged and not self.arrays_restored:
            return f"{self.path}: nothing to repair (every array and row matches the index)"
        lines = [f"{self.path}: repaired {len(self.damaged)} video(s)' rows"
                 + (f"; restored array file(s) {', '.join(self.arrays_restored)}" if self.arrays_restored else "")]
        lines.append(f"  from intact entries: {len(self.from_entries)}; re-encoded: {len(self.re_encoded)}"
                     + (f" ({', '.join(self.re_encoded[:5])}{', ...' if len(self.re_encoded) > 5 else ''})"
                        if self.re_encoded else ""))
        if self.digests_updated:
            lines.append(f"  {len(self.digests_updated)} re-encoded video(s) differ from the original rows by float "
                         "noise (another device or thread count); the index records their new digests")
        return "\n".join(lines)


def read_index(cache_dir: Path) -> dict[str, Any]:
    """``index.json`` parsed, or a typed error naming it and the fix."""
    path = cache_dir / INDEX_NAME
    if not path.is_file():
        read_manifest(cache_dir)  # CacheError when this is no cache at all
        raise CacheError(cache_dir, f"has no {INDEX_NAME} (not finished)",
                         "rerun the build command (it resumes and merges)")
    try:
        index = json.loads(path.read_text())
        if not isinstance(index, dict) or not {"arrays", "videos", "key", "key_hash"} <= index.keys():
            raise KeyError("arrays, videos, key and key_hash")
        return index
    except (ValueError, KeyError, TypeError) as err:
        raise DamagedCacheError(path, f"is unreadable ({type(err).__name__}: {err})",
                                FIX_INDEX.format(dir=cache_dir)) from err


def verify_cache(cache_dir: str | os.PathLike[str], *, sources: bool = False) -> VerifyReport:
    """The full check of a finished cache (:func:`lib.cache.integrity.verify_arrays`); with
    ``sources`` also every source video against its recorded fingerprint, content hashes
    included (:mod:`lib.cache.sources`)."""
    folder = Path(cache_dir)
    index = read_index(folder)
    report = verify_arrays(folder, index)
    if sources:
        from lib.cache.reader import Cache

        report.sources = Cache(folder, index, {}).check_sources(content=True)
    return report


def _restore_array_file(cache_dir: Path, spec: dict[str, Any]) -> None:
    """Give an array file its recorded header and size: a cut or overlong file with a good header
    is resized in place (its bytes kept), anything else is created anew (zeros)."""
    path = cache_dir / spec["file"]
    shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
    try:
        layout = read_layout(path)
        if layout.shape == shape and layout.dtype == dtype:
            os.truncate(path, layout.expected_bytes)
            return
    except (OSError, ValueError):
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    array.flush()
    del array
    os.replace(tmp, path)


def _entry_rows(
    cache_dir: Path, record: dict[str, Any], names: list[str], key_hash: str
) -> dict[str, np.ndarray] | None:
    """The damaged arrays' rows of a video from its entry, when the entry is intact."""
    try:
        tensors, _, entry_key = read_entry(entry_path(cache_dir, record["id"]))
    except (OSError, ValueError, KeyError):
        return None
    digests = record.get("digests") or {}
    if entry_key != key_hash or any(n not in tensors or (n in digests and array_digest(tensors[n]) != digests[n])
                                    for n in names):
        return None
    return {n: tensors[n].numpy() for n in names}


class _Reencoder:
    """Re-encodes single videos exactly as the cache's build did (see the module doc)."""

    def __init__(self, cache_dir: Path, index: dict[str, Any], *, vae_source: str | None, data_root: str | None,
                 device: str, threads: int | None) -> None:
        manifest = read_manifest(cache_dir)
        key = index["key"]
        enc, outputs = key["encoder"], key["outputs"]
        source = (POOLED_PIXELS if enc["kind"] == POOLED_PIXELS
                  else (vae_source or manifest["provenance"]["encoder"]["source"]))
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           ("cpu" if device == "auto" else device))
        self.cache_dir, self.key_hash = cache_dir, index["key_hash"]
        self.root = Path(data_root) if data_root else Path(index["dataset_root"])
        self.batch_size, recorded_threads = _build_settings(cache_dir)
        if threads or recorded_threads:
            torch.set_num_threads(int(threads or recorded_threads))
        self.encoder = make_encoder(
            source, device=dev, dtype=enc.get("compute_dtype", "float32"), sample=outputs["sample"],
            sample_seed=outputs.get("sample_seed") or 0, logvar=outputs["logvar"], layer_norm=outputs["layer_norm"],
            content_features=outputs["content_features"], init_seed=enc.get("init_seed") or 0,
            pool_shape=enc["pool_shape"] if isinstance(enc.get("pool_shape"), list) else None)
        differences = key_differences(enc, self.encoder.key())
        if differences:
            raise CacheError(cache_dir, f"the encoder {source!r} is not the one the cache was built with "
                             f"({describe_differences(differences)})",
                             "pass --vae with the weights the cache was built with")
        params = dict(key["spatial"])
        self.spatial = make_spatial_policy(params.pop("name"), **params)
        clips = key["clips"]
        self.settings = DecodeSettings(ClipSpec(num_frames=clips["num_frames"], target_fps=clips["target_fps"]),
                                       clips["mode"], clips.get("clip_seed") or 0, None)
        self.sample_seed = outputs.get("sample_seed") or 0
        self.storage = torch.float16 if key["format"]["storage_dtype"] == "float16" else torch.float32

    def encode(self, record: dict[str, Any]) -> dict[str, np.ndarray]:
        """Every array's rows of one video, encoded again (and its entry rewritten when entries are kept)."""
        path = self.root / "UCF-101" / record["id"]
        try:
            change = compare_source(record, path)
        except OSError as err:
            raise CacheError(path, f"cannot be read to re-encode its damaged rows ({err})",
                             "pass --data with the dataset root the cache was built from") from err
        if change is not None:
            raise StaleCacheError(path, f"changed since it was encoded ({change}): its rows cannot be made again",
                                  "rerun the build command (it re-encodes changed videos and merges)")
        job = VideoJob(0, record["id"], path, record["class_name"], int(record["label"]), int(record["group"]),
                       int(record["clip_number"]), int(record["source_bytes"]), int(record.get("source_mtime_ns", -1)))
        outputs, video = encode_video(job, self.settings, self.spatial, self.encoder, batch_size=self.batch_size,
                                      sample_seed=self.sample_seed)
        if outputs is None or video.get("clips") != record["clips"]:
            reason = video.get("error") if outputs is None else "it decodes to other clips than the cache recorded"
            raise CacheError(path, f"cannot be re-encoded as cached: {reason}",
                             "rerun the build into a new --out folder")
        stored, _ = storage_cast(outputs, self.storage)
        if (self.cache_dir / ENTRIES_DIR).is_dir():
            write_entry(entry_path(self.cache_dir, record["id"]), stored, key_hash=self.key_hash, video=video)
        return {name: value.numpy() for name, value in stored.items()}


def _build_settings(cache_dir: Path) -> tuple[int, int | None]:
    """``(batch size, threads)`` the build ran with, from its stats files (8 and None if absent)."""
    for path in sorted((cache_dir / STATS_DIR).glob("run-*.json")):
        try:
            stats = json.loads(path.read_text())
            return int(stats["batch_size"]), stats.get("threads")
        except (OSError, ValueError, KeyError, TypeError):
            continue
    log.warning("%s: no build stats: re-encoding with batch size 8 (rows may differ by float noise)", cache_dir)
    return 8, None


def repair_cache(cache_dir: str | os.PathLike[str], *, vae_source: str | None = None, data_root: str | None = None,
                 device: str = "auto", threads: int | None = None) -> RepairReport:
    """Rewrite the damaged rows of a finished cache (module doc); raises DamagedCacheError when
    a check after the repair still fails."""
    folder = Path(cache_dir)
    index = read_index(folder)
    found = verify_arrays(folder, index)
    report = RepairReport(folder, damaged=dict(found.damaged), arrays_restored=sorted(found.array_problems))
    for name in found.array_problems:
        _restore_array_file(folder, index["arrays"][name])
    damaged = verify_arrays(folder, index).damaged if found.array_problems else found.damaged
    report.damaged = damaged
    if not damaged:
        return report
    arrays = {name: np.load(folder / spec["file"], mmap_mode="r+") for name, spec in index["arrays"].items()}
    records = {r["id"]: r for r in index["videos"]}
    reencoder: _Reencoder | None = None
    previous_threads = torch.get_num_threads()
    try:
        for video_id, names in damaged.items():
            record = records[video_id]
            rows = _entry_rows(folder, record, names, index["key_hash"])
            if rows is not None:
                report.from_entries.append(video_id)
            else:
                reencoder = reencoder or _Reencoder(folder, index, vae_source=vae_source, data_root=data_root,
                                                    device=device, threads=threads)
                rows = reencoder.encode(record)
                report.re_encoded.append(video_id)
            start = int(record["row_start"])
            for name in names:
                arrays[name][start : start + int(record["num_clips"])] = rows[name]
                digest = array_digest(rows[name])
                if (record.get("digests") or {}).get(name) not in (None, digest):
                    record["digests"][name] = digest
                    if video_id not in report.digests_updated:
                        report.digests_updated.append(video_id)
    finally:
        torch.set_num_threads(previous_threads)
        for array in arrays.values():
            array.flush()
        del arrays
    for spec in index["arrays"].values():
        with open(folder / spec["file"], "rb+") as fh:
            os.fsync(fh.fileno())
    if report.digests_updated:
        atomic_write_text(folder / INDEX_NAME, json.dumps(index, sort_keys=True, separators=(",", ":")) + "\n")
    after = verify_arrays(folder, index)
    if not after.ok:
        raise DamagedCacheError(folder, f"still damaged after the repair: {after.describe()}",
                                "rebuild the cache into a new --out folder")
    return report
