"""UCF101: the official split lists, folds 1-3, group-disjoint validation, integrity checks.

Layout under a dataset ``root`` (the two official archives extracted side by side)::

    root/UCF-101/<ClassDir>/v_<Class>_gXX_cYY.avi
    root/ucfTrainTestlist/classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt

Facts of the official lists (checked against the real ones): CRLF line endings; classInd is
``<1-based index> <ClassName>``; train lines are ``<ClassDir>/<file>.avi <1-based label>``;
test lines have no label; fold k tests groups 7k-6..7k; labels come from classInd (0-based here),
never from sorting folder names (case-sensitive sorting swaps HammerThrow/Hammering and
JumpRope/JumpingJack); the folder ``HandstandPushups`` holds files ``v_HandStandPushups_*``.

Parsing rules (strict, so a hand-edited or truncated list fails loudly instead of silently
shifting labels): lines end in CRLF (as distributed) or LF; blank lines are tolerated only at
the end of a file; anything else (tabs, extra spaces or fields, a stray CR, a byte-order mark, a
blank line in the middle) is a :class:`~lib.data.errors.SplitFileError` naming the file, the line
number and the line. The class of a video is its folder, which must be a classInd name exactly;
the class in the file name must equal the folder case-insensitively; a train label must equal
classInd's index of that folder.

Validation rule (:func:`choose_val_groups`): the validation set is carved out of a fold's train
list by *whole groups*, the same group numbers for every class (mirroring the official rule that
tests groups 7k-6..7k of every class). Of the ``G`` group numbers present in the train list,
``n = round_half_up(val_fraction * G)`` clamped to ``[1, G - 1]`` are held out (``val_fraction=0``
means no validation set). Which ones: the ``n`` groups with the smallest
``sha256("<seed>:<group>")`` - deterministic across Python versions and platforms, independent of
list order, and nested (a larger fraction only adds groups). Hence train, val and test never
share a ``(class, group)`` pair, i.e. no clips of the same actor/scene leak across splits.
Fold 1 with the defaults (fraction 0.1, seed 0) holds out 2 of its 18 train groups.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lib.data.errors import DatasetError, DatasetNotFoundError, SplitFileError
from lib.runs import atomic_write_text

VIDEO_DIR_NAME = "UCF-101"
LIST_DIR_NAME = "ucfTrainTestlist"
NUM_FOLDS = 3
GROUPS_PER_TEST_FOLD = 7
CRLF = "\r\n"

CLASS_INDEX_FILE = "classInd.txt"
UCF101_VIDEOS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101.rar"
UCF101_SPLITS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip"

DEFAULT_VAL_FRACTION = 0.1
DEFAULT_VAL_SEED = 0
SPLIT_NAMES = ("train", "val", "test")

# v_<Class>_g<group>_c<clip>.avi ; <Class> may differ in case from its folder (HandStandPushups).
VIDEO_NAME_RE = re.compile(r"^v_(?P<cls>[A-Za-z0-9]+)_g(?P<group>\d+)_c(?P<clip>\d+)\.avi$")
_CLASS_LINE_RE = re.compile(r"^(?P<index>[0-9]+) (?P<name>[A-Za-z0-9]+)$")
_TRAIN_LINE_RE = re.compile(r"^(?P<rel>[^ \t/]+/[^ \t/]+) (?P<label>[0-9]+)$")
_TEST_LINE_RE = re.compile(r"^(?P<rel>[^ \t/]+/[^ \t/]+)$")


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
        atomic_write_text(list_dir / name, "".join(line + CRLF for line in lines))  # bytes as given: CRLF kept

    _write("classInd.txt", [f"{label_of[c]} {c}" for c in class_names])
    for fold in range(1, NUM_FOLDS + 1):
        train = [f"{rel} {label_of[c]}" for c, g, _, rel in entries if testing_fold_of_group(g) != fold]
        test = [rel for c, g, _, rel in entries if testing_fold_of_group(g) == fold]
        _write(f"trainlist0{fold}.txt", train)
        _write(f"testlist0{fold}.txt", test)


# =============================================================================================
# Records and splits
# =============================================================================================
@dataclass(frozen=True)
class VideoRecord:
    """One listed video. ``label`` is 0-based (classInd index - 1); ``class_name`` is the folder."""

    relpath: str  # "<ClassDir>/v_<Class>_gXX_cYY.avi", exactly as in the list file
    class_name: str  # the folder name == the classInd name (e.g. "HandstandPushups")
    label: int  # 0-based
    group: int
    clip_number: int
    path: Path  # absolute: <root>/UCF-101/<relpath>

    @property
    def file_name(self) -> str:
        """``v_<Class>_gXX_cYY.avi`` (its class part may differ in case from the folder)."""
        return self.relpath.rsplit("/", 1)[1]


@dataclass(frozen=True)
class UCF101Split:
    """One fold of UCF101 with a group-disjoint validation set carved out of its train list."""

    root: Path
    fold: int
    classes: list[str]  # label order (classInd), index == 0-based label
    train: list[VideoRecord]
    val: list[VideoRecord]
    test: list[VideoRecord]
    val_groups: tuple[int, ...]
    val_fraction: float
    seed: int

    @property
    def num_classes(self) -> int:
        """Number of classes in classInd.txt (101 for real UCF101)."""
        return len(self.classes)

    @property
    def label_of(self) -> dict[str, int]:
        """Class (folder) name -> 0-based label."""
        return {name: i for i, name in enumerate(self.classes)}

    def records(self, split: str) -> list[VideoRecord]:
        """The records of ``"train"``, ``"val"`` or ``"test"``."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLIT_NAMES}")
        return getattr(self, split)

    def groups(self, split: str) -> tuple[int, ...]:
        """Sorted group numbers present in a split."""
        return tuple(sorted({r.group for r in self.records(split)}))


# =============================================================================================
# Dataset root
# =============================================================================================
def _how_to_get_dataset(root: Path) -> str:
    return (
        f"download the official dataset with `python -m lib.data download --root {root}` "
        f"(sources: {UCF101_VIDEOS_URL} and {UCF101_SPLITS_URL}; needs unrar, unar, bsdtar or 7z), "
        f"or generate the offline synthetic dataset with `python -m lib.data synth --out {root} --preset default`"
    )


def dataset_dirs(root: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(root/UCF-101, root/ucfTrainTestlist)`` as absolute paths, or DatasetNotFoundError saying
    what is missing and how to get the dataset."""
    root_path = Path(root).expanduser().absolute()
    if not root_path.is_dir():
        raise DatasetNotFoundError(root_path, "dataset root does not exist", _how_to_get_dataset(root_path))
    video_dir, list_dir = root_path / VIDEO_DIR_NAME, root_path / LIST_DIR_NAME
    missing = [d.name + "/" for d in (video_dir, list_dir) if not d.is_dir()]
    if missing:
        raise DatasetNotFoundError(
            root_path,
            f"not a UCF101-layout dataset root: missing {' and '.join(missing)} "
            f"(expected {VIDEO_DIR_NAME}/<Class>/*.avi and {LIST_DIR_NAME}/*.txt side by side)",
            _how_to_get_dataset(root_path),
        )
    return video_dir, list_dir


def _check_fold(fold: int) -> None:
    if fold not in range(1, NUM_FOLDS + 1):
        raise ValueError(f"fold must be 1, 2 or 3, got {fold!r}")


def train_list_name(fold: int) -> str:
    """``trainlist0<fold>.txt``."""
    _check_fold(fold)
    return f"trainlist0{fold}.txt"


def test_list_name(fold: int) -> str:
    """``testlist0<fold>.txt``."""
    _check_fold(fold)
    return f"testlist0{fold}.txt"


# =============================================================================================
# List parsing
# =============================================================================================
def _line_error(path: Path, lineno: int, line: str, problem: str, fix: str) -> SplitFileError:
    return SplitFileError(path, f"line {lineno}: {problem}: {line!r}", fix)


def _read_list_lines(path: Path) -> list[tuple[int, str]]:
    """``(1-based line number, text without its CRLF/LF)`` of a list file, trailing blank lines dropped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SplitFileError(
            path, "split list file not found",
            f"restore it from {UCF101_SPLITS_URL} (or `python -m lib.data download --root {path.parent.parent} "
            "--splits-only`)") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raise SplitFileError(path, "starts with a UTF-8 byte-order mark",
                             "save it as plain ASCII without BOM, like the official lists")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SplitFileError(path, f"not UTF-8/ASCII text ({err})",
                             "restore the official list or rewrite it as ASCII") from None
    pieces = text.split("\n")
    if pieces and pieces[-1] == "":
        pieces.pop()  # the newline that ends the last line
    lines: list[tuple[int, str]] = []
    for lineno, piece in enumerate(pieces, start=1):
        line = piece[:-1] if piece.endswith("\r") else piece  # CRLF as distributed, or LF
        if "\r" in line:
            raise _line_error(path, lineno, line, "stray carriage return (lines must end in CRLF or LF)",
                              "rewrite the file with one line ending per line")
        lines.append((lineno, line))
    while lines and lines[-1][1] == "":
        lines.pop()  # an editor's trailing blank line is harmless; a blank line mid-file is not
    return lines


def read_class_index(path: str | os.PathLike[str]) -> list[str]:
    """Class names of ``classInd.txt`` in label order (index i -> 0-based label i).

    Lines must be ``<index> <Name>`` with indices 1, 2, ... in order and names unique (also
    case-insensitively, because file names are matched to folders case-insensitively).
    """
    path = Path(path)
    names: list[str] = []
    seen_folded: dict[str, int] = {}
    fix = f"restore classInd.txt from {UCF101_SPLITS_URL}: lines are `<1-based index> <ClassName>`"
    for lineno, line in _read_list_lines(path):
        m = _CLASS_LINE_RE.match(line)
        if m is None:
            raise _line_error(path, lineno, line, "malformed class line (expected `<index> <ClassName>`)", fix)
        index, name = int(m["index"]), m["name"]
        if index != len(names) + 1:
            raise _line_error(path, lineno, line,
                              f"class index {index} out of sequence (expected {len(names) + 1})", fix)
        if name.lower() in seen_folded:
            raise _line_error(path, lineno, line,
                              f"class {name!r} duplicates line {seen_folded[name.lower()]} "
                              "(names are compared case-insensitively)", fix)
        seen_folded[name.lower()] = lineno
        names.append(name)
    if not names:
        raise SplitFileError(path, "no classes listed", fix)
    return names


def read_split_list(
    path: Path,
    *,
    classes: Sequence[str],
    video_dir: Path,
    labelled: bool,
) -> list[VideoRecord]:
    """Records of a train list (``labelled``) or a test list, cross-checked against classInd."""
    label_of = {name: i for i, name in enumerate(classes)}
    folded = {name.lower(): name for name in classes}
    line_re = _TRAIN_LINE_RE if labelled else _TEST_LINE_RE
    expected = ("`<ClassDir>/v_<Class>_gXX_cYY.avi <label>`" if labelled
                else "`<ClassDir>/v_<Class>_gXX_cYY.avi` (no label)")
    fix = f"correct that line or restore {path.name} from {UCF101_SPLITS_URL}"
    seen: dict[str, int] = {}
    records: list[VideoRecord] = []
    for lineno, line in _read_list_lines(path):
        if line == "":
            raise _line_error(path, lineno, line, "blank line inside the list", fix)
        m = line_re.match(line)
        if m is None:
            raise _line_error(path, lineno, line, f"malformed line (expected {expected})", fix)
        rel = m["rel"]
        class_dir, file_name = rel.split("/")
        if class_dir not in label_of:
            hint = f" (did you mean {folded[class_dir.lower()]!r}? folder names are case-sensitive)" \
                if class_dir.lower() in folded else ""
            raise _line_error(path, lineno, line, f"class folder {class_dir!r} is not in {CLASS_INDEX_FILE}{hint}", fix)
        try:
            name_class, group, clip = parse_video_name(file_name)
        except ValueError:
            raise _line_error(path, lineno, line, "file name is not v_<Class>_gXX_cYY.avi", fix) from None
        # The folder decides the class; the name must agree up to case (HandStandPushups).
        if name_class.lower() != class_dir.lower():
            raise _line_error(path, lineno, line,
                              f"file name class {name_class!r} disagrees with its folder {class_dir!r}", fix)
        if group < 1:
            raise _line_error(path, lineno, line, f"group {group} is not a positive number", fix)
        label = label_of[class_dir]
        if labelled:
            listed = int(m["label"])
            if listed != label + 1:
                raise _line_error(
                    path, lineno, line,
                    f"label {listed} disagrees with {CLASS_INDEX_FILE}, where {class_dir} is {label + 1}",
                    f"set the label to {label + 1} (labels are classInd.txt's 1-based indices), "
                    f"or restore {path.name} from {UCF101_SPLITS_URL}")
        if rel in seen:
            raise _line_error(path, lineno, line, f"duplicate of line {seen[rel]}", fix)
        seen[rel] = lineno
        records.append(VideoRecord(relpath=rel, class_name=class_dir, label=label, group=group,
                                   clip_number=clip, path=video_dir / class_dir / file_name))
    return records


def read_fold_lists(
    root: str | os.PathLike[str], fold: int = 1, *, classes: Sequence[str] | None = None
) -> tuple[list[str], list[VideoRecord], list[VideoRecord]]:
    """``(classes, train_records, test_records)`` of one official fold, before carving validation.

    Checks that no ``(class, group)`` pair is in both the train and the test list (the official
    lists never share a group between them; a list that does leaks actors/scenes into the test).
    """
    _check_fold(fold)
    video_dir, list_dir = dataset_dirs(root)
    if classes is None:
        classes = read_class_index(list_dir / CLASS_INDEX_FILE)
    classes = list(classes)
    train_path, test_path = list_dir / train_list_name(fold), list_dir / test_list_name(fold)
    train = read_split_list(train_path, classes=classes, video_dir=video_dir, labelled=True)
    test = read_split_list(test_path, classes=classes, video_dir=video_dir, labelled=False)
    train_pairs = {(r.class_name, r.group) for r in train}
    for idx, rec in enumerate(test):
        if (rec.class_name, rec.group) in train_pairs:
            # The line number: test lists have no blank lines except trailing ones, so index + 1.
            raise _line_error(
                test_path, idx + 1, rec.relpath,
                f"group g{rec.group:02d} of {rec.class_name} is also in {train_path.name} "
                "(train and test must not share groups)",
                f"move every video of that group to one list, or restore both lists from {UCF101_SPLITS_URL}")
    return classes, train, test


# =============================================================================================
# Validation carving
# =============================================================================================
def _check_val_fraction(val_fraction: float) -> None:
    if not (isinstance(val_fraction, (int, float)) and 0.0 <= float(val_fraction) < 1.0):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")


def choose_val_groups(
    train_groups: Iterable[int], *, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = DEFAULT_VAL_SEED
) -> tuple[int, ...]:
    """Group numbers held out for validation (sorted); see the module docstring for the rule.

    ``val_fraction == 0`` -> ``()``; otherwise at least one group and never all of them, so a
    train list with a single group cannot be split (DatasetError).
    """
    _check_val_fraction(val_fraction)
    groups = sorted(set(train_groups))
    if val_fraction == 0:
        return ()
    if len(groups) < 2:
        raise DatasetError(None, f"cannot carve a validation set out of {len(groups)} train group(s) "
                                 "(need at least 2: one for validation, one for training)",
                           "use val_fraction=0 (no validation set) or a dataset with more groups per class")
    n_val = min(len(groups) - 1, max(1, math.floor(val_fraction * len(groups) + 0.5)))

    # A keyed hash, not random.Random: the draw must not change with the Python version, and
    # ranking by a per-group key makes larger fractions supersets of smaller ones.
    def rank(group: int) -> bytes:
        return hashlib.sha256(f"{seed}:{group}".encode()).digest()

    return tuple(sorted(sorted(groups, key=rank)[:n_val]))


def load_ucf101(
    root: str | os.PathLike[str],
    fold: int = 1,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_VAL_SEED,
    check_files: bool = False,
) -> UCF101Split:
    """One fold of a UCF101-layout dataset with a group-disjoint validation set.

    ``train`` + ``val`` is the official train list (val = the groups of :func:`choose_val_groups`),
    ``test`` the official test list; records keep the lists' order. Labels come from classInd.txt.
    Datasets with fewer than 25 groups per class are fine (fold 3's test list may be empty).
    ``check_files=True`` also requires every listed video to exist (DatasetError otherwise);
    :func:`integrity_report` gives the full picture.
    """
    _check_fold(fold)
    _check_val_fraction(val_fraction)
    classes, train_all, test = read_fold_lists(root, fold)
    root_path = Path(root).expanduser().absolute()
    train_path = root_path / LIST_DIR_NAME / train_list_name(fold)
    try:
        val_groups = choose_val_groups((r.group for r in train_all), val_fraction=val_fraction, seed=seed)
    except DatasetError as err:
        raise DatasetError(train_path, err.reason, err.fix) from None
    held_out = set(val_groups)
    train = [r for r in train_all if r.group not in held_out]
    val = [r for r in train_all if r.group in held_out]
    if check_files:
        missing = [r.relpath for r in (*train_all, *test) if not r.path.is_file()]
        if missing:
            raise DatasetError(
                root_path / VIDEO_DIR_NAME,
                f"{len(missing)} listed video(s) missing, e.g. {', '.join(missing[:5])}",
                f"see `python -m lib.data report --root {root_path} --fold {fold}`; re-extract the videos "
                f"or re-run `python -m lib.data download --root {root_path}`")
    return UCF101Split(root=root_path, fold=fold, classes=classes, train=train, val=val, test=test,
                       val_groups=val_groups, val_fraction=float(val_fraction), seed=seed)
