"""The manifest of a cache folder (``cache.json``): its key and plan, claimed before any work.

:func:`make_key` assembles the key (see :mod:`lib.cache.key` for hashing and differences);
:func:`claim` writes ``cache.json`` on first use and, on every later build into the folder,
requires the very same key (:class:`~lib.cache.errors.StaleCacheError` naming what differs);
:func:`is_done` decides whether a video's entry or failure record can be kept on resume.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import decord

from lib.cache.claims import CLAIMS_DIR
from lib.cache.entries import entry_is_current, entry_touched_only, read_failure, refresh_source_mtime
from lib.cache.errors import CacheError, StaleCacheError
from lib.cache.key import FORMAT_VERSION, dataset_fingerprint, describe_differences, key_differences, key_hash
from lib.cache.merge import MANIFEST_NAME, read_manifest
from lib.cache.plan import CachePlan, VideoJob, entry_path, failure_path
from lib.cache.sources import dataset_changes, describe_dataset_changes, recorded_sources
from lib.cache.spec import CacheSpec
from lib.data.spatial import SpatialPolicy

log = logging.getLogger(__name__)


def make_key(spec: CacheSpec, *, encoder: Any, spatial: SpatialPolicy, plan: CachePlan) -> dict[str, Any]:
    """The cache key (see :mod:`lib.cache.key`): what decides the stored values and the selection.

    ``spec`` gives the clip, output and storage settings; ``encoder`` (built from its VAE source),
    ``spatial`` (its policy, the encoder's default resolved) and ``plan`` (its selection, sources
    sized) give the rest. The sections and their values are those of every cache built so far.
    """
    sample, clip_mode = spec.sample, spec.clip_mode
    return {
        "format": {"version": FORMAT_VERSION, "storage_dtype": spec.storage_dtype},
        "encoder": encoder.key(),
        "outputs": {"sample": sample, "sample_seed": spec.sample_seed if sample else None, "logvar": spec.logvar,
                    "layer_norm": spec.layer_norm, "content_features": spec.content_features},
        "clips": {"num_frames": spec.num_frames, "target_fps": spec.target_fps, "mode": clip_mode,
                  "clip_seed": spec.clip_seed if clip_mode == "random" else None},
        "spatial": spatial.params(),
        "decode": {"decoder": "decord", "decord_version": decord.__version__, "strict": True},
        "dataset": {"classes": plan.classes, "folds": list(plan.folds), "splits": list(plan.splits),
                    "val_fraction": plan.val_fraction, "val_seed": plan.val_seed, "num_videos": len(plan.videos),
                    "videos_sha256": dataset_fingerprint((v.video_id, v.source_bytes) for v in plan.videos)},
    }


FIX_STALE = ("build into a new --out folder, or replace this cache with replace_stale=True (--replace-stale): the new "
             "cache is built beside it and swapped in when finished; a cache is never reused with other settings")


def check_key(
    cache_dir: Path, stored: dict[str, Any], wanted: dict[str, Any], *, plan: CachePlan | None = None
) -> None:
    """StaleCacheError naming every differing field (and, given the ``plan`` asked for, the videos
    whose size changed), unless the keys are equal."""
    differences = key_differences(stored, wanted)
    if differences:
        changed = ""
        if plan is not None and any(field == "dataset.videos_sha256" for field, _, _ in differences):
            changed = describe_dataset_changes(dataset_changes(recorded_sources(cache_dir), plan))
        raise StaleCacheError(
            cache_dir,
            f"was built with another key ({len(differences)} difference(s): {describe_differences(differences)})"
            + (f"; {changed}" if changed else ""), FIX_STALE, differences=differences)


def claim(cache_dir: Path, key: dict[str, Any], plan: CachePlan, provenance: dict[str, Any]) -> None:
    """Write cache.json (key + plan) on first use; on later runs require the same key.

    Shards started together (torchrun ranks, or ``--num-shards`` processes launched side by side)
    all claim the folder at once, so the manifest is published with an exclusive hard link: exactly
    one process creates it, the others find it and check its key like a later run would.
    """
    path = cache_dir / MANIFEST_NAME
    if path.is_file():
        check_key(cache_dir, read_manifest(cache_dir)["key"], key, plan=plan)
        return
    # another shard's draft, or the manifest it published since the check above, is not foreign content
    foreign = [p for p in cache_dir.iterdir() if not _is_manifest_file(p.name)] if cache_dir.is_dir() else []
    if foreign:
        raise CacheError(cache_dir, f"exists, is not empty and has no {MANIFEST_NAME} (not a cache folder)",
                         "choose another --out folder, or empty this one")
    manifest = {
        "format": "lvs-latent-cache-manifest", "key": key, "key_hash": key_hash(key), "provenance": provenance,
        "plan": {"classes": plan.classes, "dataset_root": str(plan.root), "videos": [v.video_id for v in plan.videos],
                 "split_lists": {str(f): lists for f, lists in plan.split_lists.items()}},
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    draft = cache_dir / f".{MANIFEST_NAME}.{os.getpid()}.draft"
    with open(draft, "wb") as fh:
        fh.write((json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(draft, path)  # atomic and exclusive: fails if another shard published first
    except FileExistsError:
        check_key(cache_dir, read_manifest(cache_dir)["key"], key, plan=plan)
    except OSError:  # a filesystem without hard links: fall back to an atomic (last-writer-wins) rename
        os.replace(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def _is_manifest_file(name: str) -> bool:
    """Files a build creates while claiming a folder: the manifest or its draft, the write check
    (:func:`lib.paths.ensure_writable_dir`) and the per-video claims of a build that claimed it."""
    return (name in (MANIFEST_NAME, CLAIMS_DIR) or name.startswith(".lvs-write-check-")
            or (name.startswith(f".{MANIFEST_NAME}.") and name.endswith(".draft")))


def _failure_is_current(failure: Path, job: VideoJob, khash: str) -> bool:
    try:
        record = read_failure(failure)
    except ValueError:
        return False
    return (record.get("key_hash") == khash and record.get("source_bytes") == job.source_bytes
            and record.get("source_mtime_ns") == job.source_mtime_ns)


def is_finished(cache_dir: Path, job: VideoJob, khash: str) -> bool:
    """The video has a current entry or failure record (read only: nothing is deleted)."""
    entry, failure = entry_path(cache_dir, job.video_id), failure_path(cache_dir, job.video_id)
    if entry.is_file() and entry_is_current(entry, key_hash=khash, source_bytes=job.source_bytes,
                                            source_mtime_ns=job.source_mtime_ns):
        return True
    return failure.is_file() and _failure_is_current(failure, job, khash)


def is_done(cache_dir: Path, job: VideoJob, khash: str, retry_failed: bool) -> bool:
    """Whether a video can be kept on resume; a stale entry or failure record is deleted (and the
    video redone). An entry whose source was only touched (same bytes by the content hash it
    recorded) is kept, with the new modification time."""
    entry = entry_path(cache_dir, job.video_id)
    if entry.is_file():
        if entry_is_current(entry, key_hash=khash, source_bytes=job.source_bytes, source_mtime_ns=job.source_mtime_ns):
            return True
        if entry_touched_only(entry, key_hash=khash, source=job.path, source_bytes=job.source_bytes,
                              source_mtime_ns=job.source_mtime_ns):
            log.info("%s: modification time changed, content unchanged (sha256); kept", job.path)
            refresh_source_mtime(entry, job.source_mtime_ns)
            return True
        log.warning("%s: stale or unreadable entry (source file changed, or written by another build); redoing it",
                    entry)
        entry.unlink(missing_ok=True)
    failure = failure_path(cache_dir, job.video_id)
    if failure.is_file() and not retry_failed and _failure_is_current(failure, job, khash):
        return True
    failure.unlink(missing_ok=True)
    return False
