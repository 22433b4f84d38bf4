"""Integrity of a finished cache's packed arrays: a fast check on every open, a full one on demand.

* **Fast** (:func:`check_array_files`, run by :func:`~lib.cache.reader.open_cache`): every array
  named in ``index.json`` exists, its ``.npy`` header says the recorded shape and dtype, and the
  file is exactly header + rows long. A deleted, truncated or overwritten array is a
  :class:`~lib.cache.errors.DamagedCacheError` naming the file and the fix, never numpy's
  ``mmap length is greater than file size``.
* **Full** (:func:`verify_arrays`, ``python -m lib.cache verify DIR``): the digest of each
  video's rows of each array is compared with the one the index recorded (the entry's own, see
  :mod:`lib.cache.merge`), so a single flipped byte is found and attributed to its video;
  ``python -m lib.cache repair DIR`` (:mod:`lib.cache.repair`) then rewrites those rows only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib.cache.entries import array_digest
from lib.cache.errors import DamagedCacheError

FIX_REPAIR = ("run python -m lib.cache repair {dir} "
              "(it rewrites the damaged rows from the entries or re-encodes their videos)")


@dataclass(frozen=True)
class ArrayLayout:
    """What a ``.npy`` file's header says, and where its data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    file_bytes: int

    @property
    def expected_bytes(self) -> int:
        return self.offset + int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def read_layout(path: Path) -> ArrayLayout:
    """Parse a ``.npy`` header (a few hundred bytes read); OSError/ValueError when unreadable."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if fortran:
            raise ValueError("stored in Fortran order")
        return ArrayLayout(tuple(shape), np.dtype(dtype), fh.tell(), path.stat().st_size)


def array_problem(cache_dir: Path, name: str, spec: dict[str, Any]) -> str | None:
    """Why the array file of ``spec`` (an index ``arrays`` entry) is not as recorded (None: fine)."""
    path = cache_dir / spec["file"]
    if not path.is_file():
        return f"{spec['file']} is missing"
    try:
        layout = read_layout(path)
    except (OSError, ValueError) as err:
        return f"{spec['file']} has no readable .npy header ({err})"
    if list(layout.shape) != list(spec["shape"]) or str(layout.dtype) != spec["dtype"]:
        return (f"{spec['file']} holds {list(layout.shape)} {layout.dtype}, the index records "
                f"{spec['shape']} {spec['dtype']}")
    if layout.file_bytes != layout.expected_bytes:
        cut = "cut short" if layout.file_bytes < layout.expected_bytes else "longer than its header says"
        return f"{spec['file']} is {cut} ({layout.file_bytes} bytes, {layout.expected_bytes} expected)"
    return None


def check_array_files(cache_dir: Path, index: dict[str, Any]) -> None:
    """The fast check (module doc): DamagedCacheError naming every bad array file."""
    problems = [p for name, spec in index["arrays"].items() if (p := array_problem(cache_dir, name, spec))]
    if problems:
        raise DamagedCacheError(cache_dir, "; ".join(problems), FIX_REPAIR.format(dir=cache_dir))


@dataclass
class VerifyReport:
    """What :func:`verify_arrays` found. ``damaged``: video id -> names of its bad arrays."""

    path: Path
    array_problems: dict[str, str] = field(default_factory=dict)  # array name -> what is wrong with its file
    damaged: dict[str, list[str]] = field(default_factory=dict)
    videos_checked: int = 0
    without_digest: int = 0  # videos merged before digests were recorded (only sizes checked)
    sources: Any = None  # a lib.cache.sources.SourceCheck when sources were checked

    @property
    def ok(self) -> bool:
        changed = bool(self.sources.changed) if self.sources is not None else False
        return not self.array_problems and not self.damaged and not changed

    def describe(self) -> str:
        lines = [f"{self.path}: {'OK' if self.ok else 'PROBLEMS FOUND'}; {self.videos_checked} videos' rows checked"
                 + (f" ({self.without_digest} without a recorded digest: sizes only)" if self.without_digest else "")]
        lines += [f"  array {name}: {problem}" for name, problem in self.array_problems.items()]
        if self.damaged:
            lines.append(f"  {len(self.damaged)} video(s) with damaged rows:")
            lines += [f"    {video}: {', '.join(names)}" for video, names in list(self.damaged.items())[:20]]
            if len(self.damaged) > 20:
                lines.append(f"    ... and {len(self.damaged) - 20} more")
        if self.sources is not None:
            lines.append(f"  sources: {self.sources.checked} checked, {len(self.sources.changed)} changed, "
                         f"{len(self.sources.unavailable)} not available")
            lines += [f"    {c.path}: {c.detail}" for c in self.sources.changed[:20]]
        if not self.ok and (self.array_problems or self.damaged):
            lines.append(f"fix: {FIX_REPAIR.format(dir=self.path)}")
        return "\n".join(lines)


def verify_arrays(cache_dir: Path, index: dict[str, Any]) -> VerifyReport:
    """The full check (module doc): every video's rows of every array against its digest."""
    report = VerifyReport(cache_dir)
    readable: dict[str, np.ndarray] = {}
    for name, spec in index["arrays"].items():
        problem = array_problem(cache_dir, name, spec)
        if problem is None:
            readable[name] = np.load(cache_dir / spec["file"], mmap_mode="r")
        else:
            report.array_problems[name] = problem
    for record in index["videos"]:
        report.videos_checked += 1
        digests = record.get("digests")
        if not digests:
            report.without_digest += 1
        start, stop = int(record["row_start"]), int(record["row_start"]) + int(record["num_clips"])
        bad = [name for name in index["arrays"] if name not in readable
               or (digests and name in digests and array_digest(readable[name][start:stop]) != digests[name])]
        if bad:
            report.damaged[record["id"]] = bad
    return report
