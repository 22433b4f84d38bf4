"""Source-video fingerprints: is every cached video still the file it was encoded from?

Every entry, failure record and finished index records each source video's size and
modification time (and, built with ``content_hash``, its SHA-256). The cache key covers the
sizes only (a dataset copied to another disk keeps its key), so a video overwritten with other
content of the same size would otherwise pass unnoticed. Hence:

* :func:`check_sources` compares the recorded fingerprints with the files as they are now:
  another size, or another modification time, is a change - unless a recorded SHA-256 shows the
  bytes are the same (a copy without times, a ``touch``). ``content=True`` also hashes every
  file that has a recorded SHA-256 (``python -m lib.cache verify --sources``), which catches a
  change that kept both size and time. A file that is not there cannot be checked: it counts as
  unavailable, not as changed (a cache stays usable without its videos).
* :func:`dataset_changes` names the videos behind a ``dataset.videos_sha256`` difference of the
  key (another size, added, removed), for :class:`~lib.cache.errors.StaleCacheError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.cache.entries import read_entry_header, read_failure
from lib.cache.key import file_sha256
from lib.cache.merge import INDEX_NAME
from lib.cache.plan import ENTRIES_DIR, ENTRY_SUFFIX, FAILURES_DIR, CachePlan


@dataclass(frozen=True)
class SourceChange:
    """A source video that is not the file its cached values were made from."""

    video: str
    path: Path
    detail: str  # e.g. "size 1000 -> 1200 bytes", "modified ... after the cache recorded ... (same size)"


@dataclass
class SourceCheck:
    """What :func:`check_sources` found: changed files, and how many could not be checked."""

    checked: int = 0
    changed: list[SourceChange] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # video ids whose file is not there

    def describe(self, limit: int = 5) -> str:
        """``a.avi (size 1 -> 2 bytes); b.avi (...); (+3 more)``."""
        return describe_changes(self.changed, limit=limit)


def describe_changes(changes: list[SourceChange], *, limit: int = 5) -> str:
    text = "; ".join(f"{c.path} ({c.detail})" for c in changes[:limit])
    return text + (f"; (+{len(changes) - limit} more)" if len(changes) > limit else "")


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def compare_source(record: Mapping[str, Any], path: Path, *, content: bool = False) -> str | None:
    """What differs between a recorded fingerprint and the file at ``path`` (None: the same, as
    far as the record tells). Raises FileNotFoundError when the file is not there."""
    st = path.stat()
    size, mtime, sha = record.get("source_bytes"), record.get("source_mtime_ns"), record.get("source_sha256")
    if size is not None and int(size) != st.st_size:
        return f"size {size} -> {st.st_size} bytes"
    touched = mtime is not None and int(mtime) != st.st_mtime_ns
    if sha and (touched or content):
        return None if file_sha256(path) == sha else "content differs from the recorded sha256 (same size)"
    if touched:
        return f"modified {_when(st.st_mtime_ns)}, after the cache recorded {_when(int(mtime))} (same size)"
    return None


def check_sources(items: Iterable[tuple[str, Path, Mapping[str, Any]]], *, content: bool = False) -> SourceCheck:
    """Compare ``(video id, path now, recorded fingerprint)`` items (see the module doc)."""
    result = SourceCheck()
    for video, path, record in items:
        try:
            detail = compare_source(record, path, content=content)
        except OSError:
            result.unavailable.append(video)
            continue
        result.checked += 1
        if detail is not None:
            result.changed.append(SourceChange(video, path, detail))
    return result


def recorded_sources(cache_dir: Path) -> dict[str, dict[str, Any]]:
    """Fingerprints a cache folder recorded, per video id: from ``index.json`` when it is readable,
    else from the entries' headers and the failure records."""
    try:
        index = json.loads((cache_dir / INDEX_NAME).read_text())
        records = {r["id"]: r for r in index["videos"]}
        records.update({f["video"]: f for f in index["failures"] if f.get("source_bytes") is not None})
        return records
    except (OSError, ValueError, KeyError, TypeError):
        pass
    records: dict[str, dict[str, Any]] = {}
    for entry in sorted((cache_dir / ENTRIES_DIR).rglob(f"*{ENTRY_SUFFIX}")):
        try:
            _, video = read_entry_header(entry)
        except (ValueError, KeyError):
            continue
        records[video["id"]] = video
    for failure in sorted((cache_dir / FAILURES_DIR).rglob("*.json")):
        try:
            record = read_failure(failure)
        except ValueError:
            continue
        records[record["video"]] = record
    return records


@dataclass(frozen=True)
class DatasetChanges:
    """The selected videos that differ from what a cache recorded."""

    resized: list[tuple[str, int, int]]  # (video id, recorded bytes, bytes now)
    added: list[str]  # selected now, not in the cache
    removed: list[str]  # in the cache, not selected now


def dataset_changes(recorded: Mapping[str, Mapping[str, Any]], plan: CachePlan) -> DatasetChanges:
    """Compare a cache's recorded sources with the videos a build selects now (their sizes)."""
    selected = {job.video_id: job for job in plan.videos}
    resized = [(vid, int(recorded[vid]["source_bytes"]), job.source_bytes) for vid, job in selected.items()
               if vid in recorded and recorded[vid].get("source_bytes") is not None
               and int(recorded[vid]["source_bytes"]) != job.source_bytes]
    added = [vid for vid in selected if vid not in recorded]
    removed = [vid for vid in recorded if vid not in selected] if recorded else []
    return DatasetChanges(resized=resized, added=added if recorded else [], removed=removed)


def describe_dataset_changes(changes: DatasetChanges, *, limit: int = 5) -> str:
    """``videos whose size changed: A (1 -> 2 bytes), ...; not in the cache: ...; ...`` ('' if none)."""

    def listing(items: list[str]) -> str:
        return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")

    parts = []
    if changes.resized:
        parts.append("videos whose size changed: " + listing(
            [f"{v} ({a} -> {b} bytes)" if b >= 0 else f"{v} (missing now)" for v, a, b in changes.resized]))
    if changes.added:
        parts.append("selected now but not in the cache: " + listing(changes.added))
    if changes.removed:
        parts.append("in the cache but not selected now: " + listing(changes.removed))
    return "; ".join(parts)
