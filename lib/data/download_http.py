"""Resumable, verified HTTP download of one file (the download half of :mod:`lib.data.download`).

- bytes go to ``<dest>.part``; a later attempt (same run or a new one) asks for the rest with
  ``Range: bytes=<size>-``. HTTP 206 with a matching ``Content-Range`` appends; HTTP 200 (a
  server that ignores Range) restarts from byte 0; HTTP 416 on a complete ``.part`` finishes it.
- the size is checked against ``Content-Length`` / the ``Content-Range`` total and an optional
  expected size; sha256 (always) and md5 (when expected) are computed while streaming, the
  prefix of a resumed ``.part`` being hashed once from disk;
- only a verified file is renamed (atomically) to ``dest``, then a ``<dest>.sha256`` sidecar
  (``sha256sum`` format) is written, so a re-run skips the download without re-hashing;
- transient failures (connection errors, timeouts, truncated bodies, HTTP 408/429/5xx) are
  retried with exponential backoff; other HTTP errors and verification failures are not.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lib.data.errors import DownloadError
from lib.runs import atomic_write_text

log = logging.getLogger("lib.data.download")

USER_AGENT = "latent-video-study/0.1 (python urllib)"
# Worth another attempt: the request may succeed later. Everything else (404, 403, ...) will not.
RETRYABLE_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE_RE = re.compile(r"^bytes (?:(?P<start>\d+)-(?P<end>\d+)|\*)/(?P<total>\d+|\*)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ExpectedFile:
    """What a downloaded file must be; ``None`` fields are not checked."""

    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


# Sizes/checksums we are certain of, by archive file name. Empty on purpose: the official site
# publishes none, and a wrong hard-coded value would reject the genuine archive. Add an entry
# only from a verified copy; downloads are still checked against the server's size.
KNOWN_ARCHIVES: dict[str, ExpectedFile] = {}


class _TransientError(Exception):
    """A failure worth retrying (connection lost, timeout, truncated body, HTTP 5xx)."""


def file_name_of_url(url: str) -> str:
    """Last path segment of a URL (``.../UCF101.rar`` -> ``UCF101.rar``)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise ValueError(f"URL has no file name: {url!r}")
    return name


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sidecar_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def read_sidecar(sidecar: Path) -> str | None:
    """The sha256 recorded in a ``sha256sum``-format sidecar, or None if absent/garbled."""
    try:
        first = sidecar.read_text().split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return first[0].lower() if first and _SHA256_RE.match(first[0].lower()) else None


class _StreamingHashes:
    """sha256 (always) and md5 (optionally) of a file being written; tracks how many bytes it saw."""

    def __init__(self, *, with_md5: bool) -> None:
        self.with_md5 = with_md5
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if self.with_md5 else None
        self.bytes_hashed = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        if self.md5 is not None:
            self.md5.update(chunk)
        self.bytes_hashed += len(chunk)

    def rehash(self, path: Path, *, chunk_size: int = 1 << 20) -> None:
        """Start over from the bytes already on disk (a ``.part`` left by an earlier run)."""
        self.reset()
        if path.exists():
            with open(path, "rb") as fh:
                while chunk := fh.read(chunk_size):
                    self.update(chunk)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """``"bytes 100-199/1000"`` -> (100, 199, 1000); ``"bytes */1000"`` -> (None, None, 1000)."""
    m = _CONTENT_RANGE_RE.match((value or "").strip())
    if m is None:
        return None

    def num(key: str) -> int | None:
        return int(m[key]) if m[key] not in (None, "*") else None

    return num("start"), num("end"), num("total")


def _open_response(url: str, dest: Path, hashes: _StreamingHashes, offset: int,
                   timeout_s: float) -> http.client.HTTPResponse | int:
    """The response to a request from byte ``offset``, or the total size when the ``.part`` is
    already whole (HTTP 416 naming exactly its size). Raises _TransientError when worth retrying."""
    part = _part_path(dest)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        # A fresh opener per attempt: proxy settings are read from the environment now, not cached.
        return urllib.request.build_opener().open(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as err:
        with err:
            if err.code == 416 and offset:
                # Range past the end: either the .part is already whole, or it is longer than the file.
                rng = _parse_content_range(err.headers.get("Content-Range"))
                if rng is not None and rng[2] == offset:
                    return offset
                part.unlink(missing_ok=True)
                hashes.reset()
                raise _TransientError(f"server refused resuming at byte {offset} (HTTP 416); restarting") from None
            if err.code in RETRYABLE_HTTP_CODES:
                raise _TransientError(f"HTTP {err.code} {err.reason}") from None
            raise DownloadError(dest, f"HTTP {err.code} {err.reason} for {url}",
                                "check the URL (or pass another mirror's URL); this error is not retried") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise _TransientError(f"cannot connect: {err}") from None


def _response_plan(resp: http.client.HTTPResponse, url: str, dest: Path, hashes: _StreamingHashes,
                   offset: int) -> tuple[int, int | None, str]:
    """``(offset, announced total, file mode)`` of a response: append after a matching 206,
    restart on a 200 (a server that ignores Range)."""
    if resp.status == 206:
        rng = _parse_content_range(resp.headers.get("Content-Range"))
        if rng is None or rng[0] != offset:
            _part_path(dest).unlink(missing_ok=True)
            hashes.reset()
            raise _TransientError(f"HTTP 206 with unexpected Content-Range {resp.headers.get('Content-Range')!r} "
                                  f"for a request from byte {offset}; restarting")
        return offset, rng[2], "ab"
    if resp.status == 200:
        if offset:
            log.info("%s: server ignored the Range request (HTTP 200); restarting from byte 0", dest.name)
        hashes.reset()
        length = resp.headers.get("Content-Length")
        return 0, (int(length) if length and length.isdigit() else None), "wb"
    raise DownloadError(dest, f"unexpected HTTP status {resp.status} for {url}", "check the URL; expected 200 or 206")


def _stream_body(resp: http.client.HTTPResponse, part: Path, mode: str, hashes: _StreamingHashes,
                 bar: tqdm, chunk_size: int) -> int:
    """Append (or write) the body to ``part`` while hashing it; returns the bytes received."""
    received = 0
    try:
        fh = open(part, mode)
    except OSError as err:
        raise DownloadError(part, f"cannot write: {err}", "check permissions and free space") from None
    with fh:
        while True:
            try:
                chunk = resp.read(chunk_size)
            except (http.client.HTTPException, OSError) as err:
                raise _TransientError(f"connection lost after {bar.n} bytes: {err!r}") from None
            if not chunk:
                return received
            try:
                fh.write(chunk)
            except OSError as err:
                raise DownloadError(part, f"cannot write: {err}", "free disk space (UCF101.rar is ~6.5 GB and "
                                    "extracting needs as much again)") from None
            hashes.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))


def _fetch_once(url: str, dest: Path, hashes: _StreamingHashes, *, expected_size: int | None,
                transfer: Transfer) -> int | None:
    """One HTTP attempt that brings ``<dest>.part`` to completion; returns the total size if known.

    Raises _TransientError for anything worth retrying (the ``.part`` keeps what arrived).
    """
    part = _part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    if hashes.bytes_hashed != offset:
        hashes.rehash(part)  # a .part from an earlier run, or a write that failed half-way
    resp = _open_response(url, dest, hashes, offset, transfer.timeout_s)
    if isinstance(resp, int):
        return resp
    with resp:
        offset, total, mode = _response_plan(resp, url, dest, hashes, offset)
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(dest, f"server announces {total} bytes, expected {expected_size}",
                                "the URL serves another file than expected; check it (or the expected size)")
        with tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                  disable=not transfer.progress, dynamic_ncols=True, leave=True) as bar:
            received = offset + _stream_body(resp, part, mode, hashes, bar, transfer.chunk_size)
    if total is not None and received != total:
        if received > total:
            part.unlink(missing_ok=True)
            hashes.reset()
            raise _TransientError(f"received {received} bytes but {total} were announced; restarting")
        # http.client returns b"" (no exception) when the peer closes early: only sizes tell.
        raise _TransientError(f"connection closed after {received} of {total} bytes")
    return total


@dataclass(frozen=True)
class Transfer:
    """How a file is fetched: ``retries`` of transient failures, waiting ``backoff_s * 2**k``
    seconds before retry ``k + 1``; ``timeout_s`` per connection; ``chunk_size`` bytes per read;
    a progress bar or not."""

    retries: int = 5
    backoff_s: float = 2.0
    timeout_s: float = 60.0
    chunk_size: int = 1 << 20
    progress: bool = True


DEFAULT_TRANSFER = Transfer()


def download_file(url: str, dest: str | os.PathLike[str], *, expected_size: int | None = None,
                  sha256: str | None = None, md5: str | None = None, force: bool = False,
                  transfer: Transfer = DEFAULT_TRANSFER) -> Path:
    """Download ``url`` to ``dest`` (resumable, verified, atomic); returns ``dest``.

    Skips the download when ``dest`` and its ``.sha256`` sidecar exist and agree with the
    expectations (``force=True`` downloads again). A ``dest`` without sidecar (e.g. copied in by
    hand) is adopted as a partial download and completed/verified through the same path.
    Retries transient failures ``transfer.retries`` times (see :class:`Transfer`).
    Raises DownloadError naming ``dest`` on a size or checksum mismatch (leaving neither
    ``dest`` nor ``.part``), a non-retryable HTTP error, or when the retries run out.
    """
    dest = Path(dest).expanduser().absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha256 = sha256.lower() if sha256 else None
    md5 = md5.lower() if md5 else None
    part, sidecar = _part_path(dest), sidecar_path(dest)
    if force:
        for stale in (dest, sidecar, part):
            stale.unlink(missing_ok=True)

    if dest.is_file():
        recorded = read_sidecar(sidecar)
        if (recorded is not None and (sha256 is None or recorded == sha256) and md5 is None
                and (expected_size is None or dest.stat().st_size == expected_size)):
            log.info("%s: already downloaded and verified (%s)", dest.name, sidecar.name)
            return dest
        # Not known to be verified: treat it as a partial download so it is completed and checked.
        sidecar.unlink(missing_ok=True)
        os.replace(dest, part)

    hashes = _StreamingHashes(with_md5=md5 is not None)
    attempt = 0
    while True:
        try:
            total = _fetch_once(url, dest, hashes, expected_size=expected_size, transfer=transfer)
            break
        except _TransientError as err:
            attempt += 1
            if attempt > transfer.retries:
                raise DownloadError(dest, f"download of {url} failed after {attempt} attempt(s): {err}",
                                    f"re-run to resume from {part.name} (kept), or check the network/URL") from None
            delay = transfer.backoff_s * 2 ** (attempt - 1)
            log.warning("%s: %s; retry %d/%d in %.1f s", dest.name, err, attempt, transfer.retries, delay)
            time.sleep(delay)

    size = part.stat().st_size
    if hashes.bytes_hashed != size:  # defensive: never verify a digest of other bytes than on disk
        hashes.rehash(part)
    problems = []
    if total is not None and size != total:
        problems.append(f"size {size} bytes, server announced {total}")
    if expected_size is not None and size != expected_size:
        problems.append(f"size {size} bytes, expected {expected_size}")
    got_sha256 = hashes.sha256.hexdigest()
    if sha256 is not None and got_sha256 != sha256:
        problems.append(f"sha256 {got_sha256}, expected {sha256}")
    if md5 is not None and hashes.md5 is not None and hashes.md5.hexdigest() != md5:
        problems.append(f"md5 {hashes.md5.hexdigest()}, expected {md5}")
    if problems:
        part.unlink(missing_ok=True)  # corrupt bytes must not be resumed from
        raise DownloadError(dest, f"verification failed for {url}: {'; '.join(problems)}",
                            "download again; if it persists, the server serves another file than expected "
                            "(check the URL and the expected checksum)")
    os.replace(part, dest)
    atomic_write_text(sidecar, f"{got_sha256}  {dest.name}\n")
    log.info("%s: %d bytes, sha256 %s", dest.name, size, got_sha256)
    return dest
