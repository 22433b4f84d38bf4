"""Per-video claims: two builds on one cache folder share the work instead of both doing all of it.

Before a build process decodes a video it creates ``claims/<ClassDir>/<video stem>.claim``
exclusively (``O_CREAT | O_EXCL``) with its owner: host, process id and a random token. Another
build that reaches the same video finds the claim and skips it while the owner is alive, so each
video is encoded once even when two builds (or a build and its accidental second launch) run on
one ``--out`` at the same time. The owner deletes the claim once the video's entry or failure
record is written.

A claim is stale, and taken over, when its owner is a process of this host that no longer runs
(a ``kill -9``), or when it is older than :data:`CLAIM_TTL_S` (an owner on another host, whose
liveness cannot be checked). The take-over is a rename over the old claim: in the rare race of
two takers both encode the video, which is wasteful but correct (entries are written atomically
and are identical).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from lib.cache.plan import video_file

CLAIMS_DIR = "claims"
CLAIM_SUFFIX = ".claim"
CLAIM_TTL_S = 6 * 3600.0  # no single video takes hours to encode


@dataclass(frozen=True)
class ClaimOwner:
    """Who holds a claim: the build's main process (decode workers claim on its behalf)."""

    host: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> ClaimOwner:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(8))

    def record(self) -> dict[str, object]:
        return {"host": self.host, "pid": self.pid, "token": self.token, "time": time.time()}


def claim_path(cache_dir: Path, video_id: str) -> Path:
    """``<cache>/claims/<ClassDir>/<video stem>.claim``."""
    return video_file(cache_dir, CLAIMS_DIR, video_id, CLAIM_SUFFIX)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(record: dict[str, object], age_s: float) -> bool:
    if age_s > CLAIM_TTL_S:
        return True
    pid = record.get("pid")
    return record.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)


def _read(path: Path) -> dict[str, object] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def try_claim(cache_dir: Path, video_id: str, owner: ClaimOwner) -> bool:
    """Claim a video for ``owner``; False when a live other build holds it."""
    path = claim_path(cache_dir, video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(owner.record()).encode()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        record = _read(path)
        if record is not None and record.get("token") == owner.token:
            return True
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:  # released between the two calls: claim it afresh
            return try_claim(cache_dir, video_id, owner)
        if record is not None and not _is_stale(record, age):
            return False
        tmp = path.with_name(f".{path.name}.{owner.token}.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)  # take over a dead or expired owner's claim
        return True
    with os.fdopen(fd, "wb") as fh:
        fh.write(payload)
    return True


def held_by_other(cache_dir: Path, video_id: str, owner: ClaimOwner) -> bool:
    """Whether a live build other than ``owner`` holds the video's claim."""
    path = claim_path(cache_dir, video_id)
    record = _read(path)
    if record is None or record.get("token") == owner.token:
        return False
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return not _is_stale(record, age)


def release(cache_dir: Path, video_id: str, owner: ClaimOwner) -> None:
    """Delete ``owner``'s claim of a video (another owner's claim is left alone)."""
    path = claim_path(cache_dir, video_id)
    record = _read(path)
    if record is not None and record.get("token") == owner.token:
        path.unlink(missing_ok=True)


def remove_claims(cache_dir: Path) -> None:
    """Delete every claim (the merge: when all videos are done no claim means anything)."""
    folder = cache_dir / CLAIMS_DIR
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and (path.suffix == CLAIM_SUFFIX or path.name.endswith(".tmp")):
            path.unlink(missing_ok=True)
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
