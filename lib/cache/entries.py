"""Per-video entries and failure records: the build's unit of work, written atomically.

An entry is ``entries/<ClassDir>/<video stem>.safetensors`` holding one tensor per output
(``latent``, optionally ``sample``, ``logvar``, ``content``), every row one clip, in the storage
dtype (float16 by default), plus JSON metadata: the cache key hash, the video's description
(labels, fps, frame count, size, source size and mtime, the source's SHA-256 when built with
``content_hash``, the clips' start times and frame indices), its decode/encode seconds and a
digest of every tensor (checked when the merge packs it). A failure record is
``failures/<ClassDir>/<video stem>.json`` with the error type and message.

Both are written with :func:`lib.runs.atomic_write` (temp file, fsync, rename): after a
``kill -9`` a file is either absent or complete, so "the entry exists and its header parses with
this cache's key hash" is exactly "this video is done". A resumed build re-checks that header and
the source file's size and mtime, and redoes anything that does not match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from lib.cache.key import file_sha256
from lib.runs import atomic_write, atomic_write_text

ENTRY_FORMAT = "lvs-latent-cache-entry"
ENTRY_VERSION = "1"
DIGEST = "blake2b-128"  # of each tensor's bytes, recorded in the entry and in the finished index


def array_digest(values: torch.Tensor | np.ndarray) -> str:
    """Digest (:data:`DIGEST`, hex) of an array's bytes in C order: what the entry, the packed
    arrays and ``verify`` compare."""
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    return hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=16).hexdigest()


def write_entry(path: Path, tensors: Mapping[str, torch.Tensor], *, key_hash: str, video: Mapping[str, Any]) -> None:
    """Atomically write one video's tensors (already in the storage dtype), their digests and
    the video's description."""
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    metadata = {"format": ENTRY_FORMAT, "version": ENTRY_VERSION, "key_hash": key_hash,
                "video": json.dumps(video, sort_keys=True),
                "digests": json.dumps({k: array_digest(v) for k, v in contiguous.items()}, sort_keys=True)}
    payload = safetensors.torch.save(contiguous, metadata=metadata)
    atomic_write(path, lambda fh: fh.write(payload))


def entry_digests(metadata: Mapping[str, str]) -> dict[str, str]:
    """The per-tensor digests an entry recorded when written ({} for entries written without)."""
    try:
        digests = json.loads(metadata.get("digests", "{}"))
    except ValueError:
        return {}
    return digests if isinstance(digests, dict) else {}


def read_entry_header(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """``(raw metadata, video description)`` without reading the tensors. Raises ValueError on
    anything that is not a complete entry of this format."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
    except Exception as err:  # safetensors raises its own SafetensorError (not a ValueError subclass)
        raise ValueError(f"{path}: not a readable safetensors entry ({err})") from err
    if metadata.get("format") != ENTRY_FORMAT or metadata.get("version") != ENTRY_VERSION:
        raise ValueError(f"{path}: not a cache entry of format {ENTRY_FORMAT} v{ENTRY_VERSION}")
    return metadata, json.loads(metadata["video"])


def read_entry(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """``(tensors, video description, key hash)`` of an entry."""
    metadata, video = read_entry_header(path)
    tensors = safetensors.torch.load_file(str(path))
    return tensors, video, metadata["key_hash"]


def write_failure(path: Path, record: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(dict(record), indent=1, sort_keys=True) + "\n")


def read_failure(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable failure record ({err})") from err
    if not isinstance(record, dict) or "video" not in record or "reason" not in record:
        raise ValueError(f"{path}: not a failure record")
    return record


def entry_is_current(path: Path, *, key_hash: str, source_bytes: int, source_mtime_ns: int) -> bool:
    """The entry is complete, of this key, and made from the source file as it is now."""
    try:
        metadata, video = read_entry_header(path)
    except (ValueError, KeyError):
        return False
    return (metadata.get("key_hash") == key_hash and video.get("source_bytes") == source_bytes
            and video.get("source_mtime_ns") == source_mtime_ns)


def entry_touched_only(path: Path, *, key_hash: str, source: Path, source_bytes: int, source_mtime_ns: int) -> bool:
    """The entry is of this key and its source's bytes are unchanged although its modification
    time is not (a copy without times, a ``touch``): decided by the content hash the entry
    recorded (built with ``content_hash``); False when it recorded none."""
    try:
        metadata, video = read_entry_header(path)
    except (ValueError, KeyError):
        return False
    if (metadata.get("key_hash") != key_hash or video.get("source_bytes") != source_bytes
            or not video.get("source_sha256")):
        return False
    try:
        return file_sha256(source) == video["source_sha256"]
    except OSError:
        return False


def refresh_source_mtime(path: Path, source_mtime_ns: int) -> None:
    """Rewrite an entry with its source's new modification time (its tensors unchanged)."""
    tensors, video, key_hash = read_entry(path)
    write_entry(path, tensors, key_hash=key_hash, video={**video, "source_mtime_ns": source_mtime_ns})
