"""UCF101: the official split lists, folds 1-3, group-disjoint validation, integrity checks.

Layout under a dataset ``root`` (the two official archives extracted side by side)::

    root/UCF-101/<ClassDir>/v_<Class>_gXX_cYY.avi
    root/ucfTrainTestlist/classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt

Facts of the official lists (checked against the real ones): CRLF line endings; classInd is
``<1-based index> <ClassName>``; train lines are ``<ClassDir>/<file>.avi <1-based label>``;
test lines have no label; fold k tests groups 7k-6..7k; labels come from classInd (0-based here),
never from sorting folder names (case-sensitive sorting swaps HammerThrow/Hammering and
JumpRope/JumpingJack); the folder ``HandstandPushups`` holds files ``v_HandStandPushups_*``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

VIDEO_DIR_NAME = "UCF-101"
LIST_DIR_NAME = "ucfTrainTestlist"
NUM_FOLDS = 3
GROUPS_PER_TEST_FOLD = 7
CRLF = "\r\n"

# v_<Class>_g<group>_c<clip>.avi ; <Class> may differ in case from its folder (HandStandPushups).
VIDEO_NAME_RE = re.compile(r"^v_(?P<cls>[A-Za-z0-9]+)_g(?P<group>\d+)_c(?P<clip>\d+)\.avi$")


def parse_video_name(file_name: str) -> tuple[str, int, int]:
    """``v_ApplyEyeMakeup_g08_c01.avi`` -> (``"ApplyEyeMakeup"``, 8, 1). ValueError if malformed."""
    m = VIDEO_NAME_RE.match(file_name)
    if m is None:
        raise ValueError(f"not a UCF101 video name (v_<Class>_gXX_cYY.avi): {file_name!r}")
    return m["cls"], int(m["group"]), int(m["clip"])


def testing_fold_of_group(group: int) -> int | None:
    """The fold (1-3) whose test list holds ``group`` (fold k tests groups 7k-6..7k), else None."""
    fold = (group - 1) // GROUPS_PER_TEST_FOLD + 1
    return fold if 1 <= fold <= NUM_FOLDS else None


def write_split_lists(list_dir: str | os.PathLike[str], class_names: list[str], relpaths: Iterable[str]) -> None:
    """Write classInd.txt and the three train/test lists in the official format (CRLF).

    ``class_names`` in label order (label i+1 in classInd); ``relpaths`` like
    ``"<ClassDir>/v_<Class>_gXX_cYY.avi"`` where ``<ClassDir>`` is one of ``class_names``.
    Fold k's test list holds groups 7k-6..7k, its train list every other video; lines sorted
    (case-insensitively by class, then group and clip) as in the official files.
    """
    list_dir = Path(list_dir)
    list_dir.mkdir(parents=True, exist_ok=True)
    label_of = {name: i + 1 for i, name in enumerate(class_names)}
    entries: list[tuple[str, int, int, str]] = []
    for rel in relpaths:
        class_dir, file_name = rel.split("/")
        if class_dir not in label_of:
            raise ValueError(f"{rel}: class folder {class_dir!r} is not in class_names")
        _, group, clip = parse_video_name(file_name)
        entries.append((class_dir, group, clip, rel))
    entries.sort(key=lambda e: (label_of[e[0]], e[1], e[2]))

    def _write(name: str, lines: list[str]) -> None:
        tmp = list_dir / f".{name}.tmp"
        with open(tmp, "w", newline="") as fh:  # newline="" keeps our CRLF verbatim
            fh.write("".join(line + CRLF for line in lines))
        os.replace(tmp, list_dir / name)

    _write("classInd.txt", [f"{label_of[c]} {c}" for c in class_names])
    for fold in range(1, NUM_FOLDS + 1):
        train = [f"{rel} {label_of[c]}" for c, g, _, rel in entries if testing_fold_of_group(g) != fold]
        test = [rel for c, g, _, rel in entries if testing_fold_of_group(g) == fold]
        _write(f"trainlist0{fold}.txt", train)
        _write(f"testlist0{fold}.txt", test)
