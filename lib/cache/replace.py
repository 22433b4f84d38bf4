"""Replacing a cache built with other settings, without ever losing a file the cache did not write.

``build_cache(..., replace_stale=True)`` on a folder holding a cache of another key builds the
new cache **beside** it, in ``.<name>.replacing-<key hash>/`` (resumable like any build: a rerun
finds it), while the old cache stays usable. Once the new cache is finished the two are swapped
in one step (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames, and a rerun finishes
an interrupted swap), the old cache moves to ``.<name>.replaced-<its key hash>/``, and there only
the files the cache wrote are deleted (:func:`cache_written_files`: its manifest, index, build
stats, packed arrays, entries, failure records, stats, claims and temp files). Anything else -
notes, plots, a user's own files - is moved into the new cache folder at the same relative
path; what cannot move (a name the new cache uses) stays in the retired folder, which is then
kept and named in the log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
from pathlib import Path

from lib.cache.claims import CLAIM_SUFFIX, CLAIMS_DIR
from lib.cache.merge import ARRAY_ORDER, BUILD_STATS_NAME, INDEX_NAME, MANIFEST_NAME, STATS_DIR
from lib.cache.plan import ENTRIES_DIR, ENTRY_SUFFIX, FAILURE_SUFFIX, FAILURES_DIR

log = logging.getLogger(__name__)
REPLACING, REPLACED = "replacing", "replaced"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# per-video folders: the suffix of the files the cache writes there
_CACHE_FOLDERS = {ENTRIES_DIR: ENTRY_SUFFIX, FAILURES_DIR: FAILURE_SUFFIX, STATS_DIR: ".json", CLAIMS_DIR: CLAIM_SUFFIX}
_TOP_LEVEL = {MANIFEST_NAME, INDEX_NAME, BUILD_STATS_NAME, *(f"{name}.npy" for name in ARRAY_ORDER)}


def replacement_dir(cache_dir: Path, key_hash: str) -> Path:
    """Where the cache of ``key_hash`` is built while it replaces the one in ``cache_dir``."""
    return cache_dir.parent / f".{cache_dir.name}.{REPLACING}-{key_hash[:16]}"


def retired_dir(cache_dir: Path, key_hash: str) -> Path:
    """Where the replaced cache of ``key_hash`` waits for its files to be deleted."""
    return cache_dir.parent / f".{cache_dir.name}.{REPLACED}-{key_hash[:16]}"


def _key_hash(folder: Path) -> str | None:
    try:
        return json.loads((folder / MANIFEST_NAME).read_text()).get("key_hash")
    except (OSError, ValueError, AttributeError):
        return None


def _is_temp(name: str) -> bool:
    return name.startswith(".") and (
        name.endswith(".tmp") or name.endswith(".draft") or name.startswith(".lvs-write-check-"))


def cache_written_files(folder: Path) -> list[Path]:
    """The files of a cache folder that the cache itself wrote (see the module doc)."""
    out = [p for p in folder.iterdir() if p.is_file() and (p.name in _TOP_LEVEL or _is_temp(p.name))]
    for sub, suffix in _CACHE_FOLDERS.items():
        if (folder / sub).is_dir():
            out += [p for p in (folder / sub).rglob("*") if p.is_file() and (p.suffix == suffix or _is_temp(p.name))]
    return sorted(out)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    return False


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def swap_in(cache_dir: Path, new_dir: Path) -> list[Path]:
    """Put the finished cache in ``new_dir`` at ``cache_dir`` and dispose of the old one there
    (module doc). Returns the paths of the kept files in their new place."""
    retired = retired_dir(cache_dir, _key_hash(cache_dir) or "unknown")
    for n in range(2, 1000):
        if not retired.exists():
            break
        retired = retired.with_name(f"{retired_dir(cache_dir, _key_hash(cache_dir) or 'unknown').name}.{n}")
    if _exchange(cache_dir, new_dir):
        os.rename(new_dir, retired)  # new_dir holds the old cache now
    else:
        os.rename(cache_dir, retired)
        os.rename(new_dir, cache_dir)  # a kill between the two renames: recover() finishes it
    _fsync_dir(cache_dir.parent)
    return dispose_retired(retired, cache_dir)


def dispose_retired(retired: Path, cache_dir: Path) -> list[Path]:
    """Delete the files a retired cache wrote, move the others into ``cache_dir``; the moved
    files' new paths. The retired folder is removed when nothing is left in it."""
    for path in cache_written_files(retired):
        path.unlink(missing_ok=True)
    kept: list[Path] = []
    for path in sorted(p for p in retired.rglob("*") if not p.is_dir()):
        target = cache_dir / path.relative_to(retired)
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
        kept.append(target)
    for folder in sorted((p for p in retired.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if any(retired.iterdir()):
        log.warning("%s: kept (files not written by the cache whose names the new cache uses)", retired)
    else:
        retired.rmdir()
    if kept:
        log.info("kept %d file(s) not written by the cache, now in %s: %s", len(kept), cache_dir,
                 ", ".join(str(p.relative_to(cache_dir)) for p in kept[:5]))
    return kept


def recover(cache_dir: Path, key_hash: str) -> None:
    """Finish a replacement a kill interrupted: a swap between its two renames (``cache_dir``
    gone, the finished new cache beside it) and the disposal of a retired cache."""
    pending = replacement_dir(cache_dir, key_hash)
    if (not cache_dir.exists() and pending.is_dir() and _key_hash(pending) == key_hash
            and (pending / INDEX_NAME).is_file()):
        os.rename(pending, cache_dir)
    elif pending.is_dir() and (cache_dir / MANIFEST_NAME).is_file() and _key_hash(cache_dir) == key_hash \
            and _key_hash(pending) != key_hash:
        pending.rename(retired_dir(cache_dir, _key_hash(pending) or "unknown"))  # exchanged, not yet renamed
    if cache_dir.is_dir():
        for retired in sorted(cache_dir.parent.glob(f".{cache_dir.name}.{REPLACED}-*")):
            if retired.is_dir():
                dispose_retired(retired, cache_dir)
