"""What a UCF101-layout dataset root holds for one fold: counts, groups and integrity problems.

:func:`integrity_report` checks one fold of a root (:mod:`lib.data.ucf101` reads its lists):
every listed video on disk, no unlisted files, class folders matching classInd, no dangling
symbolic links. :func:`format_report` renders it for ``python -m lib.data report``;
:func:`summarize` is the one JSON object of ``python -m lib.data summary``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.data.ucf101 import (
    CLASS_INDEX_FILE,
    DEFAULT_VAL_FRACTION,
    DEFAULT_VAL_SEED,
    LIST_DIR_NAME,
    NUM_FOLDS,
    SPLIT_NAMES,
    VIDEO_DIR_NAME,
    dataset_dirs,
    load_ucf101,
    read_split_list,
    test_list_name,
    train_list_name,
)


@dataclass(frozen=True)
class IntegrityReport:
    """What :func:`integrity_report` found for one fold of a dataset root."""

    root: Path
    fold: int
    val_fraction: float
    seed: int
    classes: list[str]
    counts: dict[str, int]  # split -> listed videos
    groups: dict[str, tuple[int, ...]]  # split -> group numbers present
    val_groups: tuple[int, ...]
    per_class: dict[str, dict[str, int]]  # class -> split -> listed videos
    missing_count: int  # listed in this fold's lists, absent on disk
    missing_by_split: dict[str, int]
    missing_examples: list[str]
    unlisted_count: int  # on disk under UCF-101/, in none of the list files present
    unlisted_examples: list[str]
    unknown_class_dirs: list[str]  # folders under UCF-101/ that are not classInd names
    missing_class_dirs: list[str]  # classInd names without a folder under UCF-101/
    lists_checked: list[str] = field(default_factory=list)  # list files used to find unlisted files
    dangling_links: list[str] = field(default_factory=list)  # symlinks under UCF-101/ to nothing (examples)
    dangling_count: int = 0  # listed ones are also counted as missing

    @property
    def ok(self) -> bool:
        """True when every listed video exists and nothing unexpected (or a dangling symbolic link)
        sits under UCF-101/."""
        return (self.missing_count == 0 and self.unlisted_count == 0 and not self.unknown_class_dirs
                and not self.missing_class_dirs and self.dangling_count == 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings, tuples as lists)."""
        return {
            "root": str(self.root), "fold": self.fold, "val_fraction": self.val_fraction, "seed": self.seed,
            "classes": self.classes, "counts": dict(self.counts),
            "groups": {k: list(v) for k, v in self.groups.items()}, "val_groups": list(self.val_groups),
            "per_class": self.per_class, "missing_count": self.missing_count,
            "missing_by_split": dict(self.missing_by_split), "missing_examples": list(self.missing_examples),
            "unlisted_count": self.unlisted_count, "unlisted_examples": list(self.unlisted_examples),
            "unknown_class_dirs": list(self.unknown_class_dirs), "missing_class_dirs": list(self.missing_class_dirs),
            "lists_checked": list(self.lists_checked), "dangling_links": list(self.dangling_links),
            "dangling_count": self.dangling_count, "ok": self.ok,
        }


def _files_under(video_dir: Path) -> tuple[set[str], set[str]]:
    """Relative ``a/b.avi`` paths of every non-hidden file under ``video_dir`` (one walk), and
    apart from them the symbolic links whose target does not exist (they are no file to read)."""
    found: set[str] = set()
    dangling: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(video_dir):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # .extract-* temp dirs, OS junk
        rel_dir = Path(dirpath).relative_to(video_dir).as_posix()
        for name in filenames:
            if not name.startswith("."):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                full = os.path.join(dirpath, name)
                (dangling if os.path.islink(full) and not os.path.exists(full) else found).add(rel)
    return found, dangling


def format_groups(groups: Iterable[int]) -> str:
    """``[1..7]`` -> ``"g01-g07"``; ``[3, 5, 6]`` -> ``"g03, g05-g06"``; empty -> ``"-"``."""
    ordered = sorted(set(groups))
    if not ordered:
        return "-"
    runs: list[tuple[int, int]] = []
    for g in ordered:
        if runs and g == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], g)
        else:
            runs.append((g, g))
    return ", ".join(f"g{a:02d}" if a == b else f"g{a:02d}-g{b:02d}" for a, b in runs)


def integrity_report(
    root: str | os.PathLike[str],
    fold: int = 1,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_VAL_SEED,
    max_examples: int = 10,
) -> IntegrityReport:
    """Check one fold of a dataset root against the disk.

    Reports listed videos that are missing (count, per split, first ``max_examples``), files
    under UCF-101/ in none of the official list files present (all folds, so a fold-1 report
    does not flag fold-2-only videos), class folders unknown to classInd or absent, per-class
    counts and the groups of each split. Raises DatasetNotFoundError / SplitFileError when the
    dataset or its lists are absent or malformed.
    """
    split = load_ucf101(root, fold, val_fraction=val_fraction, seed=seed)
    video_dir, list_dir = dataset_dirs(root)
    on_disk, dangling = _files_under(video_dir)

    missing_by_split: dict[str, int] = {}
    missing: list[str] = []
    for name in SPLIT_NAMES:
        absent = [r.relpath for r in split.records(name) if r.relpath not in on_disk]
        missing_by_split[name] = len(absent)
        missing.extend(absent)

    listed: set[str] = {r.relpath for name in SPLIT_NAMES for r in split.records(name)}
    lists_checked = [train_list_name(fold), test_list_name(fold)]
    for other in range(1, NUM_FOLDS + 1):
        if other == fold:
            continue
        for list_name, labelled in ((train_list_name(other), True), (test_list_name(other), False)):
            if (list_dir / list_name).is_file():
                records = read_split_list(list_dir / list_name, classes=split.classes, video_dir=video_dir,
                                          labelled=labelled)
                listed.update(r.relpath for r in records)
                lists_checked.append(list_name)
    unlisted = sorted(on_disk - listed)

    dirs_on_disk = {p.name for p in video_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    per_class: dict[str, dict[str, int]] = {c: {name: 0 for name in SPLIT_NAMES} for c in split.classes}
    for name in SPLIT_NAMES:
        for cls, n in Counter(r.class_name for r in split.records(name)).items():
            per_class[cls][name] = n

    return IntegrityReport(
        root=split.root, fold=fold, val_fraction=split.val_fraction, seed=seed, classes=list(split.classes),
        counts={name: len(split.records(name)) for name in SPLIT_NAMES},
        groups={name: split.groups(name) for name in SPLIT_NAMES},
        val_groups=split.val_groups, per_class=per_class,
        missing_count=len(missing), missing_by_split=missing_by_split, missing_examples=missing[:max_examples],
        unlisted_count=len(unlisted), unlisted_examples=unlisted[:max_examples],
        unknown_class_dirs=sorted(dirs_on_disk - set(split.classes)),
        missing_class_dirs=[c for c in split.classes if c not in dirs_on_disk],
        lists_checked=lists_checked, dangling_links=sorted(dangling)[:max_examples], dangling_count=len(dangling),
    )


def format_report(report: IntegrityReport, *, per_class: bool = True) -> str:
    """Human-readable text of an :class:`IntegrityReport` (what ``python -m lib.data report`` prints)."""
    counts = report.counts
    out = [
        f"UCF101 integrity report - {report.root}",
        f"fold {report.fold}, validation: fraction {report.val_fraction:g}, seed {report.seed} "
        f"-> val groups {format_groups(report.val_groups)}",
        f"classes: {len(report.classes)} (labels from {LIST_DIR_NAME}/{CLASS_INDEX_FILE})",
        f"videos: train {counts['train']}, val {counts['val']}, test {counts['test']} "
        f"(train+val {counts['train'] + counts['val']}, total {sum(counts.values())})",
        "groups:",
        *(f"  {name:<5} {format_groups(report.groups[name])}" for name in SPLIT_NAMES),
        f"missing listed videos: {report.missing_count}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in report.missing_by_split.items() if v) + ")"
           if report.missing_count else ""),
        *(f"  {rel}" for rel in report.missing_examples),
        *([f"  ... and {report.missing_count - len(report.missing_examples)} more"]
          if report.missing_count > len(report.missing_examples) else []),
        f"files under {VIDEO_DIR_NAME}/ in no list ({', '.join(report.lists_checked)}): {report.unlisted_count}",
        *(f"  {rel}" for rel in report.unlisted_examples),
        *([f"  ... and {report.unlisted_count - len(report.unlisted_examples)} more"]
          if report.unlisted_count > len(report.unlisted_examples) else []),
    ]
    if report.dangling_count:
        out.append(f"symbolic links under {VIDEO_DIR_NAME}/ whose target does not exist: {report.dangling_count} "
                   "(listed ones count as missing)")
        out += [f"  {rel}" for rel in report.dangling_links]
    if report.unknown_class_dirs:
        out.append(f"folders under {VIDEO_DIR_NAME}/ not in {CLASS_INDEX_FILE}: {', '.join(report.unknown_class_dirs)}")
    if report.missing_class_dirs:
        out.append(f"classes without a folder under {VIDEO_DIR_NAME}/: {', '.join(report.missing_class_dirs)}")
    if per_class:
        width = max([len("class"), *(len(c) for c in report.classes)])
        out.append("per-class counts:")
        out.append(f"  {'label':>5}  {'class':<{width}}  {'train':>5}  {'val':>5}  {'test':>5}")
        for label, cls in enumerate(report.classes):
            c = report.per_class[cls]
            out.append(f"  {label:>5}  {cls:<{width}}  {c['train']:>5}  {c['val']:>5}  {c['test']:>5}")
    out.append("status: OK" if report.ok else "status: PROBLEMS FOUND (see above)")
    return "\n".join(out)


def summarize(
    root: str | os.PathLike[str],
    fold: int = 1,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_VAL_SEED,
) -> dict[str, Any]:
    """JSON-ready summary of one fold: class count, video counts per split, missing files, groups.

    Keys: root, fold, val_fraction, seed, classes (count), train, val, test (video counts),
    train_val (train + val = the official train list), missing (listed videos absent on disk),
    unlisted (files under UCF-101/ in no list), dangling_links (symbolic links to nothing), train_groups, val_groups,
    test_groups, ok.
    """
    report = integrity_report(root, fold, val_fraction=val_fraction, seed=seed)
    counts = report.counts
    return {
        "root": str(report.root),
        "fold": report.fold,
        "val_fraction": report.val_fraction,
        "seed": report.seed,
        "classes": len(report.classes),
        "train": counts["train"],
        "val": counts["val"],
        "test": counts["test"],
        "train_val": counts["train"] + counts["val"],
        "missing": report.missing_count,
        "unlisted": report.unlisted_count,
        "dangling_links": report.dangling_count,
        "train_groups": list(report.groups["train"]),
        "val_groups": list(report.val_groups),
        "test_groups": list(report.groups["test"]),
        "ok": report.ok,
    }
