"""Which videos a cache holds, in which order, and where each one's entry lives.

The selection is the union of the requested splits of the requested folds of a UCF101-layout
dataset (``load_ucf101``: group-disjoint validation carved out of the official train list with
``val_fraction`` / ``val_seed``). The **canonical order** lists each selected video once: folds in
the given order, splits in the given order (train, val, test), records in list order. So for the
first fold every split is one contiguous block of rows in the packed arrays (the reader can
memory-map it without a copy); other folds gather their rows.

Shards: the video at canonical position ``i`` belongs to shard ``i % num_shards`` (round robin,
so every shard gets every class and a similar total length).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lib.data.ucf101 import SPLIT_NAMES, load_ucf101

ENTRIES_DIR = "entries"
FAILURES_DIR = "failures"
ENTRY_SUFFIX = ".safetensors"
FAILURE_SUFFIX = ".json"


@dataclass(frozen=True)
class VideoJob:
    """One selected video: identity, labels and the source file's size/mtime when planned."""

    position: int  # canonical position (row order of the packed arrays)
    video_id: str  # "<ClassDir>/v_<Class>_gXX_cYY.avi", the split lists' relative path
    path: Path
    class_name: str
    label: int
    group: int
    clip_number: int
    source_bytes: int  # -1 when the file is missing (it then fails to decode, and is recorded)
    source_mtime_ns: int


@dataclass(frozen=True)
class CachePlan:
    root: Path
    classes: list[str]
    folds: tuple[int, ...]
    splits: tuple[str, ...]
    val_fraction: float
    val_seed: int
    videos: list[VideoJob]
    # fold -> split -> video ids in list order (every selected video, cached or failed)
    split_lists: dict[int, dict[str, list[str]]] = field(default_factory=dict)

    def shard(self, index: int, count: int) -> list[VideoJob]:
        """The videos of shard ``index`` of ``count`` (round robin over the canonical order)."""
        if not (count >= 1 and 0 <= index < count):
            raise ValueError(f"shard index {index} out of range for {count} shard(s)")
        return [v for v in self.videos if v.position % count == index]


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return -1, -1
    return int(st.st_size), int(st.st_mtime_ns)


def make_plan(root: str | os.PathLike[str], *, folds: Sequence[int] = (1,), splits: Sequence[str] = SPLIT_NAMES,
              val_fraction: float = 0.1, val_seed: int = 0) -> CachePlan:
    """Read the fold lists and build the selection (stats every selected file once)."""
    unknown = sorted(set(splits) - set(SPLIT_NAMES))
    folds = tuple(dict.fromkeys(int(f) for f in folds))
    splits = tuple(s for s in SPLIT_NAMES if s in set(splits))  # always train, val, test order
    if not folds or not splits or unknown:
        raise ValueError(f"need at least one fold and one split of {SPLIT_NAMES}; got folds={folds}, splits={splits}")
    classes: list[str] | None = None
    jobs: dict[str, VideoJob] = {}
    split_lists: dict[int, dict[str, list[str]]] = {}
    root_path = Path(root)
    for fold in folds:
        fold_split = load_ucf101(root_path, fold, val_fraction=val_fraction, seed=val_seed)
        if classes is None:
            classes = list(fold_split.classes)
        elif classes != fold_split.classes:  # one classInd for every fold; a mismatch means a broken tree
            raise ValueError(f"{root_path}: fold {fold} has other classes than fold {folds[0]}")
        split_lists[fold] = {}
        for split in splits:
            records = fold_split.records(split)
            split_lists[fold][split] = [r.relpath for r in records]
            for r in records:
                if r.relpath not in jobs:
                    size, mtime = _stat(r.path)
                    jobs[r.relpath] = VideoJob(len(jobs), r.relpath, r.path, r.class_name, r.label, r.group,
                                               r.clip_number, size, mtime)
    return CachePlan(root=root_path, classes=classes or [], folds=folds, splits=splits,
                     val_fraction=float(val_fraction), val_seed=int(val_seed), videos=list(jobs.values()),
                     split_lists=split_lists)


def _relative(video_id: str, suffix: str) -> Path:
    rel = Path(video_id)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"video id {video_id!r} must be a relative path inside the dataset")
    return rel.with_suffix(suffix)


def video_file(cache_dir: Path, folder: str, video_id: str, suffix: str) -> Path:
    """``<cache>/<folder>/<ClassDir>/<video stem><suffix>``: a per-video file of the cache."""
    return cache_dir / folder / _relative(video_id, suffix)


def entry_path(cache_dir: Path, video_id: str) -> Path:
    """``<cache>/entries/<ClassDir>/<video stem>.safetensors``: one finished video."""
    return video_file(cache_dir, ENTRIES_DIR, video_id, ENTRY_SUFFIX)


def failure_path(cache_dir: Path, video_id: str) -> Path:
    """``<cache>/failures/<ClassDir>/<video stem>.json``: why a video could not be cached."""
    return video_file(cache_dir, FAILURES_DIR, video_id, FAILURE_SUFFIX)
