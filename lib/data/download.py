"""Resumable, verified download and atomic extraction of the official UCF101 archives.

Standard library only (urllib, hashlib, zipfile, tarfile, subprocess), plus tqdm for the bar.

Download (:func:`download_file`):

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

Extraction (:func:`extract_archive`): into a fresh ``.extract-*`` folder beside the target, then
moved into place with ``os.replace``, so an interrupted extraction never looks complete.
``.zip`` via zipfile (members escaping the destination are refused, not silently rewritten),
``.tar*`` via tarfile with ``filter="data"``, ``.rar`` via the first of unrar, 7z, bsdtar, unar
found on PATH. :func:`download_ucf101` ties it together and ends by validating the tree.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lib.data.errors import DownloadError
from lib.data.ucf101 import (
    CLASS_INDEX_FILE,
    LIST_DIR_NAME,
    NUM_FOLDS,
    UCF101_SPLITS_URL,
    UCF101_VIDEOS_URL,
    VIDEO_DIR_NAME,
    integrity_report,
    read_class_index,
    read_split_list,
    test_list_name,
    train_list_name,
)

__all__ = [
    "UCF101_VIDEOS_URL", "UCF101_SPLITS_URL", "ExpectedFile", "KNOWN_ARCHIVES", "RAR_TOOLS",
    "download_file", "extract_archive", "download_ucf101", "file_name_of_url", "available_rar_tools",
    "require_rar_tool",
]

log = logging.getLogger(__name__)

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


# =============================================================================================
# Download
# =============================================================================================
def file_name_of_url(url: str) -> str:
    """Last path segment of a URL (``.../UCF101.rar`` -> ``UCF101.rar``)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise ValueError(f"URL has no file name: {url!r}")
    return name


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _sidecar_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _read_sidecar(sidecar: Path) -> str | None:
    """The sha256 recorded in a ``sha256sum``-format sidecar, or None if absent/garbled."""
    try:
        first = sidecar.read_text().split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return first[0].lower() if first and _SHA256_RE.match(first[0].lower()) else None


def _write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def _fetch_once(
    url: str,
    dest: Path,
    hashes: _StreamingHashes,
    *,
    expected_size: int | None,
    timeout_s: float,
    chunk_size: int,
    progress: bool,
) -> int | None:
    """One HTTP attempt that brings ``<dest>.part`` to completion; returns the total size if known.

    Raises _TransientError for anything worth retrying (the ``.part`` keeps what arrived).
    """
    part = _part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    if hashes.bytes_hashed != offset:
        hashes.rehash(part)  # a .part from an earlier run, or a write that failed half-way
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        # A fresh opener per attempt: proxy settings are read from the environment now, not cached.
        resp = urllib.request.build_opener().open(urllib.request.Request(url, headers=headers), timeout=timeout_s)
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

    with resp:
        if resp.status == 206:
            rng = _parse_content_range(resp.headers.get("Content-Range"))
            if rng is None or rng[0] != offset:
                part.unlink(missing_ok=True)
                hashes.reset()
                raise _TransientError(f"HTTP 206 with unexpected Content-Range {resp.headers.get('Content-Range')!r} "
                                      f"for a request from byte {offset}; restarting")
            total, mode = rng[2], "ab"
        elif resp.status == 200:
            if offset:
                log.info("%s: server ignored the Range request (HTTP 200); restarting from byte 0", dest.name)
            offset = 0
            hashes.reset()
            length = resp.headers.get("Content-Length")
            total, mode = (int(length) if length and length.isdigit() else None), "wb"
        else:
            raise DownloadError(dest, f"unexpected HTTP status {resp.status} for {url}",
                                "check the URL; expected 200 or 206")
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(dest, f"server announces {total} bytes, expected {expected_size}",
                                "the URL serves another file than expected; check it (or the expected size)")

        received = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=dest.name, disable=not progress, dynamic_ncols=True, leave=True)
        with bar:
            try:
                fh = open(part, mode)
            except OSError as err:
                raise DownloadError(part, f"cannot write: {err}", "check permissions and free space") from None
            with fh:
                while True:
                    try:
                        chunk = resp.read(chunk_size)
                    except (http.client.HTTPException, OSError) as err:
                        raise _TransientError(f"connection lost after {received} bytes: {err!r}") from None
                    if not chunk:
                        break
                    try:
                        fh.write(chunk)
                    except OSError as err:
                        raise DownloadError(part, f"cannot write: {err}",
                                            "free disk space (UCF101.rar is ~6.5 GB and extracting needs as much again)") from None
                    hashes.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    if total is not None and received != total:
        if received > total:
            part.unlink(missing_ok=True)
            hashes.reset()
            raise _TransientError(f"received {received} bytes but {total} were announced; restarting")
        # http.client returns b"" (no exception) when the peer closes early: only sizes tell.
        raise _TransientError(f"connection closed after {received} of {total} bytes")
    return total


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    chunk_size: int = 1 << 20,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, verified, atomic); returns ``dest``.

    Skips the download when ``dest`` and its ``.sha256`` sidecar exist and agree with the
    expectations (``force=True`` downloads again). A ``dest`` without sidecar (e.g. copied in by
    hand) is adopted as a partial download and completed/verified through the same path.
    Retries transient failures ``retries`` times, waiting ``backoff_s * 2**k`` seconds.
    Raises DownloadError naming ``dest`` on a size or checksum mismatch (leaving neither
    ``dest`` nor ``.part``), a non-retryable HTTP error, or when the retries run out.
    """
    dest = Path(dest).expanduser().absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha256 = sha256.lower() if sha256 else None
    md5 = md5.lower() if md5 else None
    part, sidecar = _part_path(dest), _sidecar_path(dest)
    if force:
        for stale in (dest, sidecar, part):
            stale.unlink(missing_ok=True)

    if dest.is_file():
        recorded = _read_sidecar(sidecar)
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
            total = _fetch_once(url, dest, hashes, expected_size=expected_size, timeout_s=timeout_s,
                                chunk_size=chunk_size, progress=progress)
            break
        except _TransientError as err:
            attempt += 1
            if attempt > retries:
                raise DownloadError(dest, f"download of {url} failed after {attempt} attempt(s): {err}",
                                    f"re-run to resume from {part.name} (kept), or check the network/URL") from None
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning("%s: %s; retry %d/%d in %.1f s", dest.name, err, attempt, retries, delay)
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
    _write_atomic_text(sidecar, f"{got_sha256}  {dest.name}\n")
    log.info("%s: %d bytes, sha256 %s", dest.name, size, got_sha256)
    return dest


# =============================================================================================
# Extraction
# =============================================================================================
def _rar_cmd_unrar(exe: str, archive: Path, out: Path) -> list[str]:
    return [exe, "x", "-o+", "-y", "-idq", str(archive), str(out) + os.sep]  # trailing sep: a folder


def _rar_cmd_7z(exe: str, archive: Path, out: Path) -> list[str]:
    return [exe, "x", "-y", f"-o{out}", str(archive)]


def _rar_cmd_bsdtar(exe: str, archive: Path, out: Path) -> list[str]:
    return [exe, "-xf", str(archive), "-C", str(out)]


def _rar_cmd_unar(exe: str, archive: Path, out: Path) -> list[str]:
    return [exe, "-q", "-f", "-D", "-o", str(out), str(archive)]


# Tried in this order; each tool strips absolute and ".." member paths by default.
RAR_TOOLS: tuple[tuple[str, Callable[[str, Path, Path], list[str]]], ...] = (
    ("unrar", _rar_cmd_unrar),
    ("7z", _rar_cmd_7z),
    ("bsdtar", _rar_cmd_bsdtar),
    ("unar", _rar_cmd_unar),
)
RAR_TOOL_HELP = (
    "install one of them, e.g. `apt-get install unrar` (non-free) or `apt-get install unar` or "
    "`apt-get install libarchive-tools` (bsdtar) or `apt-get install p7zip-full p7zip-rar` (7z); "
    "macOS: `brew install unar`; then re-run (the downloaded archive is kept until extraction succeeds)"
)


def _archive_kind(archive: Path) -> str:
    """``"zip"``, ``"tar"`` or ``"rar"``, by suffix, else by magic bytes."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(".rar"):
        return "rar"
    if re.search(r"\.(tar|tgz|tbz2?|txz|tar\.(gz|bz2|xz))$", name):
        return "tar"
    with open(archive, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise DownloadError(archive, "unknown archive format (expected .zip, .tar[.gz|.bz2|.xz] or .rar)",
                        "check that the URL points to the archive itself, not to an HTML page")


def _unsafe_member_reason(name: str) -> str | None:
    """Why an archive member name would land outside the destination, or None if it is safe."""
    if not name:
        return "empty name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "'..' component"
    return None


def _extract_zip(archive: Path, out: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            # Check everything first: a refused archive must leave nothing behind.
            for info in zf.infolist():
                reason = _unsafe_member_reason(info.filename)
                target = (out / info.filename).resolve()
                if reason is None and not target.is_relative_to(out.resolve()):
                    reason = "resolves outside the destination"
                if reason is not None:
                    raise DownloadError(archive, f"refusing member {info.filename!r}: {reason} (path traversal)",
                                        "the archive is not the official one; delete it and download again")
            zf.extractall(out)
    except (zipfile.BadZipFile, EOFError) as err:
        raise DownloadError(archive, f"corrupt or truncated zip ({err})",
                            "delete it (and its .sha256 sidecar) and download again") from None


def _extract_tar(archive: Path, out: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(out, filter="data")  # refuses absolute/../device members and escaping links
            else:  # Python builds predating PEP 706: refuse by hand what filter="data" would
                for member in tf.getmembers():
                    reason = _unsafe_member_reason(member.name)
                    if reason is None and not (member.isfile() or member.isdir()):
                        reason = "not a regular file or folder"
                    if reason is not None:
                        raise DownloadError(archive, f"refusing member {member.name!r}: {reason}",
                                            "the archive is not the official one; delete it and download again")
                tf.extractall(out)
    except tarfile.TarError as err:  # includes tarfile.FilterError
        raise DownloadError(archive, f"cannot extract tar: {err}",
                            "delete it (and its .sha256 sidecar) and download again") from None


def available_rar_tools() -> list[tuple[str, str, Callable[[str, Path, Path], list[str]]]]:
    """``(name, executable, command builder)`` of each RAR tool on PATH, in preference order."""
    found = [(name, shutil.which(name), make_cmd) for name, make_cmd in RAR_TOOLS]
    return [(name, exe, make_cmd) for name, exe, make_cmd in found if exe]


def require_rar_tool(archive: Path) -> None:
    """DownloadError saying what to install when no RAR extractor is on PATH."""
    if not available_rar_tools():
        raise DownloadError(archive, f"no RAR extractor found on PATH (tried {', '.join(n for n, _ in RAR_TOOLS)})",
                            RAR_TOOL_HELP)


def _extract_rar(archive: Path, out: Path) -> None:
    require_rar_tool(archive)
    available = available_rar_tools()
    failures = []
    for name, exe, make_cmd in available:
        # A failed tool may leave partial output: start each try from an empty folder.
        for child in list(out.iterdir()):
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        cmd = make_cmd(exe, archive, out)
        log.info("extracting %s with %s", archive.name, name)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, errors="replace")
        if proc.returncode == 0:
            return
        failures.append(f"{name} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    raise DownloadError(archive, "RAR extraction failed: " + " | ".join(failures),
                        "the archive may be corrupt (delete it and its .sha256 sidecar, download again) "
                        "or the tool lacks RAR support (p7zip needs p7zip-rar); " + RAR_TOOL_HELP)


def _refuse_escaping_links(root: Path, archive: Path) -> None:
    """External tools may create symlinks; none may point outside the extraction folder."""
    resolved_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            p = Path(dirpath) / name
            if p.is_symlink() and not p.resolve().is_relative_to(resolved_root):
                raise DownloadError(archive, f"refusing symlink {p.relative_to(root)} pointing outside the destination",
                                    "the archive is not the official one; delete it and download again")


def _find_dir(root: Path, name: str, *, max_depth: int = 3) -> Path | None:
    """``root/name`` or the shallowest ``.../name`` folder up to ``max_depth`` levels down."""
    level = [root]
    for _ in range(max_depth):
        for folder in level:
            if (folder / name).is_dir():
                return folder / name
        level = [c for folder in level for c in sorted(folder.iterdir()) if c.is_dir() and not c.is_symlink()]
    return None


def _temp_prefix(archive: Path) -> str:
    return f".extract-{archive.name}-"


def extract_archive(
    archive: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    *,
    expect: str | None = None,
) -> list[Path]:
    """Extract ``archive`` into ``dest_dir`` atomically-ish; returns the paths put in place.

    Extracts into ``dest_dir/.extract-<archive>-XXXX`` and then ``os.replace``-s each top-level
    entry into ``dest_dir`` (replacing an existing one), so a crash mid-extraction leaves only the
    hidden temp folder (removed on the next call), never a half-filled target. With ``expect``,
    only the folder of that name is moved (found at the top level or up to 3 levels down, for
    archives that wrap it in another folder); its absence is a DownloadError.
    """
    archive = Path(archive).expanduser().absolute()
    dest_dir = Path(dest_dir).expanduser().absolute()
    dest_dir.mkdir(parents=True, exist_ok=True)
    if not archive.is_file():
        raise DownloadError(archive, "archive not found", "download it first")
    for stale in dest_dir.glob(_temp_prefix(archive) + "*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted run
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(archive), dir=dest_dir))
    try:
        kind = _archive_kind(archive)
        {"zip": _extract_zip, "tar": _extract_tar, "rar": _extract_rar}[kind](archive, tmp)
        _refuse_escaping_links(tmp, archive)
        if expect is not None:
            found = _find_dir(tmp, expect)
            if found is None:
                top = ", ".join(sorted(p.name for p in tmp.iterdir())) or "nothing"
                raise DownloadError(archive, f"archive holds no {expect}/ folder (top level: {top})",
                                    "check that the URL points to the right archive")
            entries = [found]
        else:
            entries = sorted(tmp.iterdir())
        placed = []
        for src in entries:
            target = dest_dir / src.name
            if target.exists() or target.is_symlink():
                # Park the old entry inside tmp (same filesystem: a rename), removed with tmp below.
                os.replace(target, tmp / f".old-{src.name}")
            os.replace(src, target)
            placed.append(target)
        return placed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# =============================================================================================
# UCF101
# =============================================================================================
def _marker_path(root: Path, archive_name: str) -> Path:
    return root / f".{archive_name}.extracted"


def _marker_valid(marker: Path, root: Path) -> bool:
    """True if ``marker`` records a finished extraction whose folders are still there."""
    try:
        info = json.loads(marker.read_text())
        return all((root / entry).is_dir() for entry in info["entries"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return False


def _fetch_and_extract(
    url: str,
    expect: str,
    *,
    root: Path,
    archive_dir: Path,
    keep_archive: bool,
    force: bool,
    retries: int,
    backoff_s: float,
    timeout_s: float,
    progress: bool,
) -> None:
    name = file_name_of_url(url)
    marker = _marker_path(root, name)
    if not force and _marker_valid(marker, root):
        log.info("%s: already extracted (%s); skipping", name, marker.name)
        return
    target = root / expect
    if target.exists() and not force:
        # Not extracted by us (no marker): maybe the synthetic dataset or a hand-made tree.
        raise DownloadError(target, f"already exists but was not extracted from {name} by this tool",
                            "move it away or choose another --root (or pass --force to replace it)")
    if name.lower().endswith(".rar"):
        require_rar_tool(archive_dir / name)  # before a 6.5 GB download that could not be extracted
    known = KNOWN_ARCHIVES.get(name, ExpectedFile())
    archive = download_file(url, archive_dir / name, expected_size=known.size, sha256=known.sha256, md5=known.md5,
                            retries=retries, backoff_s=backoff_s, timeout_s=timeout_s, progress=progress)
    log.info("extracting %s into %s", name, root)
    extract_archive(archive, root, expect=expect)
    _write_atomic_text(marker, json.dumps({"archive": name, "url": url, "entries": [expect],
                                           "sha256": _read_sidecar(_sidecar_path(archive))}) + "\n")
    if not keep_archive:
        archive.unlink(missing_ok=True)
        _sidecar_path(archive).unlink(missing_ok=True)


def _validate_tree(root: Path, *, splits_only: bool, videos_marker: Path) -> None:
    """Parse every list (all folds); with videos, require every listed video on disk."""
    list_dir = root / LIST_DIR_NAME
    if splits_only:
        classes = read_class_index(list_dir / CLASS_INDEX_FILE)
        for fold in range(1, NUM_FOLDS + 1):
            read_split_list(list_dir / train_list_name(fold), classes=classes, video_dir=root / VIDEO_DIR_NAME, labelled=True)
            read_split_list(list_dir / test_list_name(fold), classes=classes, video_dir=root / VIDEO_DIR_NAME, labelled=False)
        return
    for fold in range(1, NUM_FOLDS + 1):
        report = integrity_report(root, fold, val_fraction=0.0)
        if report.missing_count:
            raise DownloadError(
                root / VIDEO_DIR_NAME,
                f"extracted tree is incomplete: fold {fold} lists {report.missing_count} video(s) not on disk, "
                f"e.g. {', '.join(report.missing_examples[:5])}",
                f"delete {root / VIDEO_DIR_NAME} and {videos_marker} and run the download again")
        if report.unlisted_count:
            log.warning("%d file(s) under %s are in no split list, e.g. %s", report.unlisted_count,
                        VIDEO_DIR_NAME, ", ".join(report.unlisted_examples[:3]))


def download_ucf101(
    root: str | os.PathLike[str],
    *,
    splits_only: bool = False,
    keep_archives: bool = False,
    videos_url: str = UCF101_VIDEOS_URL,
    splits_url: str = UCF101_SPLITS_URL,
    archive_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download and extract the official split lists (and, unless ``splits_only``, the videos)
    into ``root`` so that it holds ``ucfTrainTestlist/`` and ``UCF-101/``; returns ``root``.

    Archives go to ``archive_dir`` (default ``root/archives``) and are deleted after a
    successful extraction unless ``keep_archives``. Each finished extraction leaves a
    ``root/.<archive>.extracted`` marker, so re-runs skip finished steps; an interrupted run
    resumes the download. An existing ``UCF-101/`` or ``ucfTrainTestlist/`` not made by this
    function is left alone (DownloadError) unless ``force``. Ends by validating the tree: every
    list of folds 1-3 parses and, with videos, every listed video exists (DownloadError otherwise).
    The URLs can point to a mirror (or a local test server).
    """
    root = Path(root).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    archives = Path(archive_dir).expanduser().absolute() if archive_dir is not None else root / "archives"
    # Split lists first: tiny, so a wrong URL or a missing tool shows before the 6.5 GB download.
    jobs = [(splits_url, LIST_DIR_NAME)] + ([] if splits_only else [(videos_url, VIDEO_DIR_NAME)])
    for url, expect in jobs:
        _fetch_and_extract(url, expect, root=root, archive_dir=archives, keep_archive=keep_archives, force=force,
                           retries=retries, backoff_s=backoff_s, timeout_s=timeout_s, progress=progress)
    if archives.is_dir() and not any(archives.iterdir()):
        archives.rmdir()
    _validate_tree(root, splits_only=splits_only, videos_marker=_marker_path(root, file_name_of_url(videos_url)))
    log.info("UCF101 ready at %s", root)
    return root
