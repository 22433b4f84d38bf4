"""Resumable, verified download and atomic extraction of the official UCF101 archives.

Standard library only (urllib, hashlib, zipfile, tarfile, subprocess), plus tqdm for the bar.
:mod:`lib.data.download_http` downloads one file (:func:`download_file`: resumable, verified,
atomic); :mod:`lib.data.download_extract` extracts an archive (:func:`extract_archive`: into a
fresh folder beside the target, then moved into place). :func:`download_ucf101` ties them
together, skips finished steps by their markers and ends by validating the tree.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from lib.data.download_extract import RAR_TOOLS, available_rar_tools, extract_archive, require_rar_tool
from lib.data.download_http import (
    DEFAULT_TRANSFER,
    KNOWN_ARCHIVES,
    ExpectedFile,
    Transfer,
    download_file,
    file_name_of_url,
    read_sidecar,
    sidecar_path,
)
from lib.data.errors import DownloadError
from lib.data.ucf101 import (
    CLASS_INDEX_FILE,
    LIST_DIR_NAME,
    NUM_FOLDS,
    UCF101_SPLITS_URL,
    UCF101_VIDEOS_URL,
    VIDEO_DIR_NAME,
    read_class_index,
    read_split_list,
    test_list_name,
    train_list_name,
)
from lib.data.ucf101_report import integrity_report
from lib.runs import atomic_write_text

__all__ = [
    "UCF101_VIDEOS_URL", "UCF101_SPLITS_URL", "ExpectedFile", "KNOWN_ARCHIVES", "RAR_TOOLS", "Transfer",
    "download_file", "extract_archive", "download_ucf101", "file_name_of_url", "available_rar_tools",
    "require_rar_tool",
]

log = logging.getLogger(__name__)


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
    transfer: Transfer,
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
                            transfer=transfer)
    log.info("extracting %s into %s", name, root)
    extract_archive(archive, root, expect=expect)
    atomic_write_text(marker, json.dumps({"archive": name, "url": url, "entries": [expect],
                                           "sha256": read_sidecar(sidecar_path(archive))}) + "\n")
    if not keep_archive:
        archive.unlink(missing_ok=True)
        sidecar_path(archive).unlink(missing_ok=True)


def _validate_tree(root: Path, *, splits_only: bool, videos_marker: Path) -> None:
    """Parse every list (all folds); with videos, require every listed video on disk."""
    list_dir = root / LIST_DIR_NAME
    if splits_only:
        classes = read_class_index(list_dir / CLASS_INDEX_FILE)
        video_dir = root / VIDEO_DIR_NAME
        for fold in range(1, NUM_FOLDS + 1):
            read_split_list(list_dir / train_list_name(fold), classes=classes, video_dir=video_dir, labelled=True)
            read_split_list(list_dir / test_list_name(fold), classes=classes, video_dir=video_dir, labelled=False)
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
    transfer: Transfer = DEFAULT_TRANSFER,
) -> Path:
    """Download and extract the official split lists (and, unless ``splits_only``, the videos)
    into ``root`` so that it holds ``ucfTrainTestlist/`` and ``UCF-101/``; returns ``root``.

    Archives go to ``archive_dir`` (default ``root/archives``) and are deleted after a
    successful extraction unless ``keep_archives``. Each finished extraction leaves a
    ``root/.<archive>.extracted`` marker, so re-runs skip finished steps; an interrupted run
    resumes the download. An existing ``UCF-101/`` or ``ucfTrainTestlist/`` not made by this
    function is left alone (DownloadError) unless ``force``. Ends by validating the tree: every
    list of folds 1-3 parses and, with videos, every listed video exists (DownloadError otherwise).
    The URLs can point to a mirror (or a local test server); ``transfer`` says how each archive
    is fetched (retries, timeouts, progress bar).
    """
    root = Path(root).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    archives = Path(archive_dir).expanduser().absolute() if archive_dir is not None else root / "archives"
    # Split lists first: tiny, so a wrong URL or a missing tool shows before the 6.5 GB download.
    jobs = [(splits_url, LIST_DIR_NAME)] + ([] if splits_only else [(videos_url, VIDEO_DIR_NAME)])
    for url, expect in jobs:
        _fetch_and_extract(url, expect, root=root, archive_dir=archives, keep_archive=keep_archives, force=force,
                           transfer=transfer)
    if archives.is_dir() and not any(archives.iterdir()):
        archives.rmdir()
    _validate_tree(root, splits_only=splits_only, videos_marker=_marker_path(root, file_name_of_url(videos_url)))
    log.info("UCF101 ready at %s", root)
    return root
