"""Atomic extraction of a downloaded archive (the extraction half of :mod:`lib.data.download`).

:func:`extract_archive` extracts into a fresh ``.extract-*`` folder beside the target, then moves
each top-level entry into place with ``os.replace``, so an interrupted extraction never looks
complete. ``.zip`` via zipfile (members escaping the destination are refused, not silently
rewritten), ``.tar*`` via tarfile with ``filter="data"``, ``.rar`` via the first of unrar, 7z,
bsdtar, unar found on PATH.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from lib.data.errors import DownloadError

log = logging.getLogger("lib.data.download")


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
