"""Reading a finished cache: ``load_split`` for training, ``open_cache`` for everything else.

``load_split(cache_dir, split, fold=1)`` returns a :class:`ClipSet` ``(latents, labels,
video_index)``: every clip of the split's cached videos as one float16 tensor ``(N, C, T', H', W')``
(rows in the split's list order, each video's clips in time order), its label, and the index of
its video in ``open_cache(cache_dir).videos(split, fold)`` (for video-level aggregation). For a
pooled-pixels cache the "latents" are the pooled clips ``(N, 3, T', h, w)``. ``kind`` picks another
stored array: ``"sample"``, ``"logvar"`` (when built with them).

Memory: in RAM by default (UCF101, ~100k clips x 4,032 values, is ~0.8 GB in float16, read in
seconds); ``mmap=True`` (or automatically when the split is larger than half the available RAM)
returns a copy-on-write memory map instead, which needs the split's rows to be contiguous: true
for every split of the cache's first fold (see :mod:`lib.cache.plan`).

Opening checks what a finished cache relies on: every array file has the header and size the
index records (:mod:`lib.cache.integrity`; a damaged one is a ``DamagedCacheError`` naming the
file and ``python -m lib.cache repair``), and every source video still has the size and
modification time it was encoded from (:mod:`lib.cache.sources`; a changed one is a
``StaleCacheError`` naming it).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from lib.cache.errors import CacheError, DamagedCacheError, IncompleteCacheError, StaleCacheError
from lib.cache.integrity import check_array_files
from lib.cache.merge import BUILD_STATS_NAME, INDEX_FORMAT, INDEX_NAME, MANIFEST_NAME, read_manifest
from lib.cache.sources import SourceCheck, check_sources
from lib.data.spatial import SpatialPolicy, make_spatial_policy
from lib.paths import resolve_path

FIX_BUILD = ("rerun the build command (it resumes and merges), "
             "or python -m lib.cache merge DIR after all shards finished")


class ClipSet(NamedTuple):
    """One split's clips: ``latents`` float16 (N, C, T, H, W), ``labels`` int64 (N,),
    ``video_index`` int64 (N,) into ``Cache.videos(split, fold)``."""

    latents: torch.Tensor
    labels: torch.Tensor
    video_index: torch.Tensor


@dataclass(frozen=True)
class VideoEntry:
    """One cached video. ``id`` is its relative path in the dataset (``<ClassDir>/<file>.avi``)."""

    id: str
    path: Path  # absolute, under the dataset root the cache was built from
    label: int
    class_name: str
    group: int
    clip_number: int
    fps: float
    num_frames: int
    height: int
    width: int
    source_bytes: int
    clip_indices: tuple[int, ...]
    clip_start_times: tuple[float, ...]  # seconds
    clip_frame_indices: tuple[tuple[int, ...], ...]  # source frame indices of each clip
    row_start: int  # first row of its clips in the cache arrays
    num_clips: int

    @property
    def relpath(self) -> str:
        return self.id

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the source video."""
        return self.height, self.width


def _entry(record: dict[str, Any], root: Path) -> VideoEntry:
    clips = record["clips"]
    return VideoEntry(
        id=record["id"], path=root / "UCF-101" / record["id"], label=int(record["label"]),
        class_name=record["class_name"], group=int(record["group"]), clip_number=int(record["clip_number"]),
        fps=float(record["fps"]),
        num_frames=int(record["num_frames"]), height=int(record["height"]), width=int(record["width"]),
        source_bytes=int(record["source_bytes"]), clip_indices=tuple(int(c[0]) for c in clips),
        clip_start_times=tuple(float(c[1]) for c in clips), clip_frame_indices=tuple(tuple(c[2]) for c in clips),
        row_start=int(record["row_start"]), num_clips=int(record["num_clips"]))


class Cache:
    """A finished cache folder (see :mod:`lib.cache.merge` for its files)."""

    def __init__(self, path: Path, index: dict[str, Any], stats: dict[str, Any]) -> None:
        self.path = path
        self.index = index
        self.build_stats = stats
        self.key: dict[str, Any] = index["key"]
        self.key_hash: str = index["key_hash"]
        self.class_names: list[str] = list(index["classes"])
        self.dataset_root = Path(index["dataset_root"])
        self.source_kind: str = index["source_kind"]  # "vae" or "pooled-pixels"
        self.latent_shape: tuple[int, int, int, int] = tuple(index["latent_shape"])  # type: ignore[assignment]
        self.clip_shape: tuple[int, ...] | None = tuple(index["clip_shape"]) if index.get("clip_shape") else None
        self.num_clips: int = int(index["num_clips"])
        self._records = {r["id"]: r for r in index["videos"]}
        self._entries: dict[str, VideoEntry] = {}
        self.failure_records: list[dict[str, Any]] = list(index["failures"])

    # -- description ------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_videos(self) -> int:
        return len(self._records)

    @property
    def arrays(self) -> tuple[str, ...]:
        """Stored outputs: ``latent`` and any of ``sample``, ``logvar``, ``content``."""
        return tuple(self.index["arrays"])

    @property
    def folds(self) -> tuple[int, ...]:
        return tuple(int(f) for f in self.index["splits"])

    @property
    def failures(self) -> list[tuple[str, str]]:
        """``(video id, reason)`` for every video that could not be cached."""
        return [(f["video"], f"{f['error']}: {f['reason']}") for f in self.failure_records]

    @property
    def encode_seconds(self) -> float:
        """Total seconds spent inside the encoder over the whole build (all runs and shards)."""
        return float(self.build_stats.get("encode_seconds") or 0.0)

    @property
    def build_wall_seconds(self) -> float:
        """Wall time of every build process summed (shards run in parallel count each)."""
        return float(self.build_stats.get("wall_seconds_sum_of_processes") or 0.0)

    @property
    def encode_seconds_per_clip(self) -> float:
        return self.encode_seconds / self.num_clips if self.num_clips else 0.0

    @property
    def bytes_on_disk(self) -> dict[str, int]:
        """Bytes of each stored array, of the index, of the per-video entries, and in total."""
        sizes = {name: (self.path / spec["file"]).stat().st_size for name, spec in self.index["arrays"].items()}
        sizes["index"] = (self.path / INDEX_NAME).stat().st_size
        sizes["entries"] = sum(p.stat().st_size for p in (self.path / "entries").rglob("*") if p.is_file())
        sizes["total"] = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return sizes

    @property
    def source_bytes(self) -> int:
        """Bytes of the cached videos' source files."""
        return sum(int(r["source_bytes"]) for r in self._records.values())

    def spatial_policy(self) -> SpatialPolicy:
        """The spatial policy the clips were preprocessed with (from the key)."""
        params = dict(self.key["spatial"])
        return make_spatial_policy(params.pop("name"), **params)

    def source_items(self) -> list[tuple[str, Path, dict[str, Any]]]:
        """``(video id, path under the dataset root, recorded fingerprint)`` of every cached and
        failed video."""
        base = self.dataset_root / "UCF-101"
        return ([(r["id"], base / r["id"], r) for r in self._records.values()]
                + [(f["video"], base / f["video"], f) for f in self.failure_records
                   if f.get("source_bytes") is not None])

    def check_sources(self, *, content: bool = False) -> SourceCheck:
        """Compare every source video with its recorded fingerprint (:mod:`lib.cache.sources`)."""
        return check_sources(self.source_items(), content=content)

    def check_key(self, expected: dict[str, Any]) -> None:
        """StaleCacheError naming every field that differs from ``expected``."""
        from lib.cache.manifest import check_key

        check_key(self.path, self.key, expected)

    # -- videos and rows --------------------------------------------------------------------------
    def split_ids(self, split: str, fold: int = 1) -> list[str]:
        """Ids of every video the split lists (cached or failed), in list order."""
        splits = self.index["splits"]
        if str(fold) not in splits:
            raise CacheError(self.path, f"holds folds {sorted(int(f) for f in splits)}, not fold {fold}",
                             f"build a cache with --folds {fold} (or the folds you need)")
        if split not in splits[str(fold)]:
            raise CacheError(self.path, f"holds splits {sorted(splits[str(fold)])} of fold {fold}, not {split!r}",
                             f"build a cache with --splits including {split}")
        return splits[str(fold)][split]

    def videos(self, split: str, fold: int = 1) -> list[VideoEntry]:
        """The split's cached videos in list order (failed ones left out): ``video_index`` order."""
        out = []
        for video_id in self.split_ids(split, fold):
            if video_id in self._records:
                if video_id not in self._entries:
                    self._entries[video_id] = _entry(self._records[video_id], self.dataset_root)
                out.append(self._entries[video_id])
        return out

    def split_rows(self, split: str, fold: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, video_index)``: int64 row numbers of the split's clips in the arrays, and for
        each the position of its video in :meth:`videos`."""
        records = [self._records[v] for v in self.split_ids(split, fold) if v in self._records]
        if not records:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        rows = np.concatenate(
            [np.arange(r["row_start"], r["row_start"] + r["num_clips"], dtype=np.int64) for r in records])
        video_index = np.repeat(np.arange(len(records), dtype=np.int64), [r["num_clips"] for r in records])
        return rows, video_index

    def split_labels(self, split: str, fold: int = 1) -> np.ndarray:
        records = [self._records[v] for v in self.split_ids(split, fold) if v in self._records]
        return np.repeat(np.array([r["label"] for r in records], np.int64), [r["num_clips"] for r in records])

    def array(self, name: str = "latent", *, mmap_mode: str | None = "r") -> np.ndarray:
        """A stored array, memory-mapped by default (``mmap_mode=None`` reads it whole)."""
        if name not in self.index["arrays"]:
            raise CacheError(self.path, f"has no {name!r} array (stored: {list(self.arrays)})",
                             "rebuild with the option that stores it "
                             f"(e.g. --{name.replace('content', 'content-features')})")
        return np.load(self.path / self.index["arrays"][name]["file"], mmap_mode=mmap_mode)

    def read_rows(self, name: str, rows: np.ndarray, *, mmap: bool | None = None) -> torch.Tensor:
        """Rows of a stored array as a tensor: in RAM, or (``mmap``) a copy-on-write memory map."""
        stored = self.array(name, mmap_mode="r")
        if rows.size == 0:
            return torch.from_numpy(np.zeros((0, *stored.shape[1:]), stored.dtype))
        contiguous = bool(rows[-1] - rows[0] + 1 == rows.size and np.all(np.diff(rows) == 1))
        if mmap is None:
            mmap = rows.size * stored[0].nbytes > _available_ram_bytes() // 2
        if mmap:
            if not contiguous:
                raise CacheError(self.path, "this split's rows are not contiguous (not the cache's first fold), so it "
                                 "cannot be memory-mapped without a copy", "pass mmap=False to load it into RAM, or "
                                 "build a cache whose first --folds entry is this fold")
            mapped = np.load(self.path / self.index["arrays"][name]["file"], mmap_mode="c")
            return torch.from_numpy(mapped[rows[0] : rows[-1] + 1])
        data = np.array(stored[rows[0] : rows[-1] + 1]) if contiguous else stored[rows]
        return torch.from_numpy(data)


def _available_ram_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


FIX_INDEX = ("python -m lib.cache merge {dir} writes it again from the entries (or rerun the build command, which "
             "resumes and merges)")


@functools.lru_cache(maxsize=8)
def _open_cached(path: str, stamp: tuple[int, int, int]) -> Cache:
    folder = Path(path)
    try:
        index = json.loads((folder / INDEX_NAME).read_text())
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
            raise CacheError(folder / INDEX_NAME, f"is not a {INDEX_FORMAT} index", FIX_INDEX.format(dir=folder))
        cache = Cache(folder, index, {})
    except (ValueError, KeyError, TypeError) as err:
        if isinstance(err, CacheError):
            raise
        raise DamagedCacheError(folder / INDEX_NAME, f"is unreadable ({type(err).__name__}: {err})",
                                FIX_INDEX.format(dir=folder)) from err
    stats_path = folder / BUILD_STATS_NAME
    try:
        cache.build_stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    except ValueError:
        cache.build_stats = {}  # timings only: a rerun of the build writes them again
    return cache


def open_cache(cache_dir: str | os.PathLike[str], *, expect_key: dict[str, Any] | None = None,
               check_sources: bool = True) -> Cache:
    """Open a finished cache (IncompleteCacheError while its build or merge is unfinished);
    ``expect_key`` given: StaleCacheError unless the cache was built with exactly that key.

    Every open checks the array files' sizes against the index (DamagedCacheError naming the file)
    and, with ``check_sources``, every source video's recorded size and modification time
    (StaleCacheError naming each changed file; videos that are not there are not checked).
    """
    folder = resolve_path(cache_dir)
    index = folder / INDEX_NAME
    if not index.is_file():
        manifest = read_manifest(folder)  # CacheError when this is no cache at all
        done = (sum(1 for _ in (folder / "entries").rglob("*.safetensors"))
                + sum(1 for _ in (folder / "failures").rglob("*.json")))
        raise IncompleteCacheError(folder, f"is not finished ({done} of {len(manifest['plan']['videos'])} videos done, "
                                   f"no {INDEX_NAME})", FIX_BUILD)
    st = index.stat()
    stats = folder / BUILD_STATS_NAME
    stats_stamp = stats.stat().st_mtime_ns if stats.is_file() else 0
    cache = _open_cached(str(folder), (st.st_mtime_ns, st.st_size, stats_stamp))
    if cache.key_hash != read_manifest(folder).get("key_hash"):
        raise IncompleteCacheError(folder, f"{INDEX_NAME} belongs to another build than {MANIFEST_NAME}", FIX_BUILD)
    check_array_files(folder, cache.index)
    if expect_key is not None:
        cache.check_key(expect_key)
    if check_sources:
        found = cache.check_sources()
        if found.changed:
            raise StaleCacheError(
                folder, f"{len(found.changed)} source video(s) changed since they were encoded: {found.describe()}",
                "rerun the build command on this folder: it re-encodes only the changed videos (a file that was "
                "only copied or touched keeps its cache when built with --content-hash)")
    return cache


def load_split(cache_dir: str | os.PathLike[str], split: str, fold: int = 1, *, kind: str = "latent",
               mmap: bool | None = None) -> ClipSet:
    """All clips of ``split`` (``"train"``, ``"val"``, ``"test"``) of ``fold``; see the module doc."""
    if kind == "content":
        raise ValueError("content features are (N, D), not clips: use load_content_features()")
    cache = open_cache(cache_dir)
    rows, video_index = cache.split_rows(split, fold)
    latents = cache.read_rows(kind, rows, mmap=mmap)
    return ClipSet(latents, torch.from_numpy(cache.split_labels(split, fold)), torch.from_numpy(video_index))


def load_content_features(cache_dir: str | os.PathLike[str], split: str, fold: int = 1, *,
                          mmap: bool | None = None) -> torch.Tensor:
    """float16 (N, D) content-frame features, row for row with ``load_split(cache_dir, split, fold)``."""
    cache = open_cache(cache_dir)
    rows, _ = cache.split_rows(split, fold)
    return cache.read_rows("content", rows, mmap=mmap)
