"""UCF101 split lists, folds, group-disjoint validation, integrity report and the CLI.

Two parts:
- self-contained tests on small lists written in the official format (CRLF) in tmp_path;
- tests on a tree laid out like real UCF101, built from the official lists in
  ``../shared/reference/ucf101`` (empty placeholder videos); they skip when that folder is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from lib.data.errors import DatasetError, DatasetNotFoundError, SplitFileError
from lib.data.ucf101 import (
    DEFAULT_VAL_FRACTION,
    DEFAULT_VAL_SEED,
    LIST_DIR_NAME,
    VIDEO_DIR_NAME,
    UCF101Split,
    VideoRecord,
    choose_val_groups,
    load_ucf101,
    read_class_index,
    write_split_lists,
)
from lib.data.ucf101_report import IntegrityReport, format_groups, format_report, integrity_report, summarize
from lib.paths import REPO_ROOT

# classInd order (case-insensitive alphabetical, as in the official file): Python's sorted()
# puts HammerThrow before Hammering and JumpRope before JumpingJack.
CLASSES = ["ApplyEyeMakeup", "Hammering", "HammerThrow", "HandstandPushups", "JumpingJack", "JumpRope"]
NAME_CLASS = {"HandstandPushups": "HandStandPushups"}  # the file names' spelling of that class


def make_dataset(root: Path, *, groups: int = 10, clips: int = 2, classes: list[str] = CLASSES,
                 create_files: bool = True) -> list[str]:
    """A UCF101-layout tree under ``root`` (official-format lists, empty videos); returns relpaths."""
    relpaths = [
        f"{cls}/v_{NAME_CLASS.get(cls, cls)}_g{g:02d}_c{c:02d}.avi"
        for cls in classes for g in range(1, groups + 1) for c in range(1, clips + 1)
    ]
    write_split_lists(root / LIST_DIR_NAME, classes, relpaths)
    (root / VIDEO_DIR_NAME).mkdir(parents=True, exist_ok=True)
    if create_files:
        for rel in relpaths:
            path = root / VIDEO_DIR_NAME / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return relpaths


def list_path(root: Path, name: str) -> Path:
    return root / LIST_DIR_NAME / name


def read_raw_lines(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\r\n")[:-1]


def write_raw_lines(path: Path, lines: list[str], *, eol: str = "\r\n") -> None:
    path.write_bytes("".join(line + eol for line in lines).encode())


def replace_line(path: Path, index: int, new_line: str) -> str:
    """Replace 0-based line ``index`` of a CRLF list; returns the new line."""
    lines = read_raw_lines(path)
    lines[index] = new_line
    write_raw_lines(path, lines)
    return new_line


@pytest.fixture()
def mini_root(tmp_path: Path) -> Path:
    root = tmp_path / "ucf"
    make_dataset(root)
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lib.data", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


# =============================================================================================
# Parsing and labels
# =============================================================================================
def test_written_lists_are_in_the_official_format(mini_root: Path) -> None:
    raw = list_path(mini_root, "trainlist01.txt").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
    assert read_raw_lines(list_path(mini_root, "classInd.txt"))[:2] == ["1 ApplyEyeMakeup", "2 Hammering"]
    assert read_raw_lines(list_path(mini_root, "testlist01.txt"))[0] == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"


def test_labels_come_from_class_index_not_sorting(mini_root: Path) -> None:
    split = load_ucf101(mini_root, 1)
    assert split.classes == CLASSES == read_class_index(list_path(mini_root, "classInd.txt"))
    assert sorted(CLASSES) != CLASSES  # the trap: sorted() swaps HammerThrow/Hammering, JumpRope/JumpingJack
    for rec in (*split.train, *split.val, *split.test):
        assert rec.label == CLASSES.index(rec.class_name)
    assert split.label_of["HammerThrow"] == 2 and split.label_of["JumpRope"] == 5


def test_handstand_pushups_folder_with_differently_cased_file_names(mini_root: Path) -> None:
    split = load_ucf101(mini_root, 1)
    recs = [r for r in (*split.train, *split.val, *split.test) if r.class_name == "HandstandPushups"]
    assert len(recs) == 20
    rec = recs[0]
    assert rec.relpath.startswith("HandstandPushups/v_HandStandPushups_g")
    assert rec.file_name.startswith("v_HandStandPushups_")
    assert rec.label == 3
    assert rec.path == mini_root.absolute() / VIDEO_DIR_NAME / rec.relpath and rec.path.is_file()


def test_video_record_fields(mini_root: Path) -> None:
    split = load_ucf101(mini_root, 2)
    rec = split.test[0]
    assert isinstance(rec, VideoRecord) and isinstance(split, UCF101Split)
    assert (rec.relpath, rec.class_name, rec.label, rec.group, rec.clip_number) == (
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "ApplyEyeMakeup", 0, 8, 1)
    assert rec.path.is_absolute()
    with pytest.raises(AttributeError):
        rec.label = 3  # type: ignore[misc]  # frozen


def test_lf_only_and_trailing_blank_line_are_tolerated(mini_root: Path) -> None:
    before = load_ucf101(mini_root, 1)
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        path = list_path(mini_root, name)
        write_raw_lines(path, [*read_raw_lines(path), ""], eol="\n")  # LF endings + a trailing blank line
    assert b"\r" not in list_path(mini_root, "trainlist01.txt").read_bytes()
    assert load_ucf101(mini_root, 1) == before


def test_last_line_without_newline_is_tolerated(mini_root: Path) -> None:
    before = load_ucf101(mini_root, 1)
    path = list_path(mini_root, "testlist01.txt")
    path.write_bytes(path.read_bytes()[:-2])
    assert load_ucf101(mini_root, 1) == before


def test_mislabelled_line_names_file_line_and_text(mini_root: Path) -> None:
    path = list_path(mini_root, "trainlist01.txt")
    bad = replace_line(path, 4, "ApplyEyeMakeup/v_ApplyEyeMakeup_g10_c01.avi 3")
    with pytest.raises(SplitFileError) as exc:
        load_ucf101(mini_root, 1)
    msg = str(exc.value)
    assert exc.value.path == path.absolute()
    assert "trainlist01.txt" in msg and "line 5" in msg and bad in msg
    assert "label 3 disagrees with classInd.txt" in msg and "is 1" in msg


def test_unknown_class_is_an_error(mini_root: Path) -> None:
    replace_line(list_path(mini_root, "testlist01.txt"), 0, "Archery/v_Archery_g01_c01.avi")
    with pytest.raises(SplitFileError,
                       match=r"testlist01\.txt: line 1: class folder 'Archery' is not in classInd\.txt"):
        load_ucf101(mini_root, 1)


def test_folder_case_mismatch_hints_the_classind_spelling(mini_root: Path) -> None:
    replace_line(list_path(mini_root, "testlist01.txt"), 0, "HandStandPushups/v_HandStandPushups_g01_c01.avi")
    with pytest.raises(SplitFileError, match="did you mean 'HandstandPushups'"):
        load_ucf101(mini_root, 1)


def test_file_name_class_must_match_folder(mini_root: Path) -> None:
    replace_line(list_path(mini_root, "trainlist01.txt"), 0, "ApplyEyeMakeup/v_JumpRope_g08_c01.avi 1")
    with pytest.raises(SplitFileError, match=r"line 1: file name class 'JumpRope' disagrees with its folder"):
        load_ucf101(mini_root, 1)


@pytest.mark.parametrize(
    ("list_name", "line", "problem"),
    [
        ("trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\t1", "malformed line"),
        ("trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi  1", "malformed line"),
        ("trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1 1", "malformed line"),
        ("trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "malformed line"),
        ("trainlist01.txt", " ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1", "malformed line"),
        ("trainlist01.txt", "v_ApplyEyeMakeup_g08_c01.avi 1", "malformed line"),
        ("trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08.avi 1", "file name is not"),
        ("trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g00_c01.avi 1", "group 0 is not a positive"),
        ("trainlist01.txt", "", "blank line inside the list"),
        ("trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\r1", "stray carriage return"),
        ("testlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1", "malformed line"),
        ("testlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi ", "malformed line"),
        ("classInd.txt", "1  ApplyEyeMakeup", "malformed class line"),
        ("classInd.txt", "0 ApplyEyeMakeup", "class index 0 out of sequence"),
        ("classInd.txt", "1 Apply_Eye", "malformed class line"),
    ],
)
def test_malformed_lines_are_errors_naming_file_and_line(
    mini_root: Path, list_name: str, line: str, problem: str
) -> None:
    replace_line(list_path(mini_root, list_name), 0, line)
    with pytest.raises(SplitFileError) as exc:
        load_ucf101(mini_root, 1)
    assert f"{list_name}: line 1: {problem}" in str(exc.value)
    assert repr(line) in str(exc.value)


def test_duplicates_and_byte_order_mark_are_errors(mini_root: Path) -> None:
    path = list_path(mini_root, "testlist01.txt")
    lines = read_raw_lines(path)
    write_raw_lines(path, [*lines, lines[2]])
    with pytest.raises(SplitFileError, match=f"line {len(lines) + 1}: duplicate of line 3"):
        load_ucf101(mini_root, 1)
    write_raw_lines(path, lines)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    with pytest.raises(SplitFileError, match="byte-order mark"):
        load_ucf101(mini_root, 1)


def test_duplicate_class_in_class_index(mini_root: Path) -> None:
    path = list_path(mini_root, "classInd.txt")
    lines = read_raw_lines(path)
    write_raw_lines(path, [*lines, f"{len(lines) + 1} applyeyemakeup"])
    with pytest.raises(SplitFileError, match="duplicates line 1"):
        read_class_index(path)


def test_group_in_both_train_and_test_is_an_error(mini_root: Path) -> None:
    path = list_path(mini_root, "testlist01.txt")
    lines = read_raw_lines(path)
    write_raw_lines(path, [*lines, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c09.avi"])
    with pytest.raises(SplitFileError,
                       match=rf"line {len(lines) + 1}: group g08 of ApplyEyeMakeup is also in trainlist01"):
        load_ucf101(mini_root, 1)


# =============================================================================================
# Folds and validation carving
# =============================================================================================
def test_fold_counts_with_ten_groups(mini_root: Path) -> None:
    per_group = len(CLASSES) * 2
    expected_test = {1: 7 * per_group, 2: 3 * per_group, 3: 0}  # groups 1-7, 8-10, none (only 10 groups)
    for fold, n_test in expected_test.items():
        split = load_ucf101(mini_root, fold)
        assert len(split.test) == n_test
        assert len(split.train) + len(split.val) == 10 * per_group - n_test
        assert len(split.val_groups) >= 1 and split.groups("train")
    split3 = load_ucf101(mini_root, 3)
    assert split3.test == [] and split3.groups("test") == ()
    assert len(split3.val_groups) == 1  # round(0.1 * 10) = 1


def _pairs(records: list[VideoRecord]) -> set[tuple[str, int]]:
    return {(r.class_name, r.group) for r in records}


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_validation_is_whole_groups_disjoint_and_deterministic(tmp_path: Path, fold: int) -> None:
    root = tmp_path / "ucf"
    make_dataset(root, groups=25, clips=1, create_files=False)
    seen_choices = set()
    for seed in range(6):
        split = load_ucf101(root, fold, val_fraction=0.2, seed=seed)
        assert split == load_ucf101(root, fold, val_fraction=0.2, seed=seed)  # deterministic
        train, val, test = _pairs(split.train), _pairs(split.val), _pairs(split.test)
        assert not (train & val) and not (train & test) and not (val & test)
        # the same group numbers for every class
        assert {g for _, g in val} == set(split.val_groups)
        assert all({g for c, g in val if c == cls} == set(split.val_groups) for cls in CLASSES)
        official_train_groups = set(range(1, 26)) - set(range(7 * fold - 6, 7 * fold + 1))
        assert set(split.val_groups) < official_train_groups
        assert len(split.val_groups) == 4  # round(0.2 * 18)
        seen_choices.add(split.val_groups)
    assert len(seen_choices) > 1  # the seed matters


def test_choose_val_groups_rule() -> None:
    groups = list(range(8, 26))
    assert choose_val_groups(groups) == choose_val_groups(reversed(groups))  # order-independent
    assert len(choose_val_groups(groups, val_fraction=0.01)) == 1  # at least one group
    assert len(choose_val_groups(groups, val_fraction=0.99)) == len(groups) - 1  # never all
    assert choose_val_groups(groups, val_fraction=0.0) == ()
    small = set(choose_val_groups(groups, val_fraction=0.1, seed=3))
    large = set(choose_val_groups(groups, val_fraction=0.3, seed=3))
    assert small < large  # nested: a larger fraction only adds groups
    assert choose_val_groups([8, 9], val_fraction=0.9) in {(8,), (9,)}
    with pytest.raises(DatasetError, match="at least 2"):
        choose_val_groups([8], val_fraction=0.5)
    for bad in (1.0, -0.1, 2):
        with pytest.raises(ValueError, match="val_fraction"):
            choose_val_groups(groups, val_fraction=bad)
    assert DEFAULT_VAL_FRACTION == 0.1 and DEFAULT_VAL_SEED == 0


def test_zero_val_fraction_keeps_the_whole_train_list(mini_root: Path) -> None:
    split = load_ucf101(mini_root, 1, val_fraction=0.0)
    assert split.val == [] and split.val_groups == () and len(split.train) == 3 * 2 * len(CLASSES)


def test_bad_fold_is_a_value_error(mini_root: Path) -> None:
    with pytest.raises(ValueError, match="fold"):
        load_ucf101(mini_root, 4)


def test_check_files_requires_every_listed_video(mini_root: Path) -> None:
    (mini_root / VIDEO_DIR_NAME / "JumpRope/v_JumpRope_g01_c01.avi").unlink()
    load_ucf101(mini_root, 1)  # listing alone does not need the files
    with pytest.raises(DatasetError, match=r"1 listed video\(s\) missing, e\.g\. JumpRope/v_JumpRope_g01_c01\.avi"):
        load_ucf101(mini_root, 1, check_files=True)


# =============================================================================================
# Missing dataset
# =============================================================================================
@pytest.mark.parametrize("remove", ["root", VIDEO_DIR_NAME, LIST_DIR_NAME])
def test_missing_dataset_says_how_to_get_it(mini_root: Path, remove: str) -> None:
    shutil.rmtree(mini_root if remove == "root" else mini_root / remove)
    with pytest.raises(DatasetNotFoundError) as exc:
        summarize(mini_root, 1)
    msg = str(exc.value)
    assert (remove + "/" in msg) if remove != "root" else "does not exist" in msg
    assert f"python -m lib.data download --root {mini_root.absolute()}" in msg
    assert "python -m lib.data synth --out" in msg and "--preset default" in msg
    assert "https://www.crcv.ucf.edu/data/UCF101/UCF101.rar" in msg
    assert "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip" in msg


def test_missing_list_file_is_a_split_file_error(mini_root: Path) -> None:
    list_path(mini_root, "testlist02.txt").unlink()
    with pytest.raises(SplitFileError, match=r"testlist02\.txt: split list file not found"):
        load_ucf101(mini_root, 2)
    load_ucf101(mini_root, 1)  # other folds are unaffected
    assert integrity_report(mini_root, 1).lists_checked == [
        "trainlist01.txt", "testlist01.txt", "trainlist02.txt", "trainlist03.txt", "testlist03.txt"]


# =============================================================================================
# Integrity report and summary
# =============================================================================================
def test_integrity_report_finds_missing_unlisted_and_counts(mini_root: Path) -> None:
    video_dir = mini_root / VIDEO_DIR_NAME
    (video_dir / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi").unlink()  # a test video
    (video_dir / "JumpRope/v_JumpRope_g09_c02.avi").unlink()
    (video_dir / "JumpRope/v_JumpRope_g99_c01.avi").touch()  # in no list
    (video_dir / "Archery").mkdir()  # not a classInd class
    (video_dir / ".hidden").touch()  # ignored

    report = integrity_report(mini_root, 1)
    assert isinstance(report, IntegrityReport)
    assert report.missing_count == 2 and not report.ok
    assert sorted(report.missing_examples) == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                                               "JumpRope/v_JumpRope_g09_c02.avi"]
    assert report.missing_by_split["test"] == 1
    assert report.missing_by_split["train"] + report.missing_by_split["val"] == 1
    assert report.unlisted_count == 1 and report.unlisted_examples == ["JumpRope/v_JumpRope_g99_c01.avi"]
    assert report.unknown_class_dirs == ["Archery"] and report.missing_class_dirs == []
    assert report.groups["test"] == tuple(range(1, 8))
    assert set(report.groups["train"]) | set(report.groups["val"]) == {8, 9, 10}
    assert report.per_class["HandstandPushups"]["test"] == 14
    assert sum(c["train"] + c["val"] for c in report.per_class.values()) == 36
    json.dumps(report.to_dict())  # JSON-ready

    text = format_report(report)
    assert "missing listed videos: 2 (" in text and "JumpRope/v_JumpRope_g09_c02.avi" in text
    assert "test  g01-g07" in text and "status: PROBLEMS FOUND" in text
    assert "not in classInd.txt: Archery" in text
    assert "HandstandPushups" in format_report(report)
    assert "HandstandPushups" not in format_report(report, per_class=False)


def test_format_groups() -> None:
    assert format_groups(range(1, 8)) == "g01-g07"
    assert format_groups([3, 5, 6, 9]) == "g03, g05-g06, g09"
    assert format_groups([]) == "-"


def test_summarize_keys_and_counts(mini_root: Path) -> None:
    summary = summarize(mini_root, 2, val_fraction=0.2, seed=5)
    assert {"classes", "train", "val", "test", "missing"} <= summary.keys()
    assert summary["classes"] == len(CLASSES) and summary["missing"] == 0 and summary["ok"] is True
    assert summary["train"] + summary["val"] == summary["train_val"] == 7 * 12
    assert summary["test"] == 3 * 12 and summary["test_groups"] == [8, 9, 10]
    assert (summary["fold"], summary["val_fraction"], summary["seed"]) == (2, 0.2, 5)
    assert summary["val_groups"] == list(load_ucf101(mini_root, 2, val_fraction=0.2, seed=5).val_groups)
    json.dumps(summary)


# =============================================================================================
# CLI (subprocess)
# =============================================================================================
def test_cli_summary_prints_one_json_object(mini_root: Path) -> None:
    proc = run_cli("summary", "--root", str(mini_root), "--fold", "1", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    summary = json.loads(proc.stdout)
    assert summary == summarize(mini_root, 1, seed=2)
    assert (summary["train"] + summary["val"], summary["test"], summary["missing"]) == (36, 84, 0)


def test_cli_report_and_missing_dataset_exit_code(mini_root: Path, tmp_path: Path) -> None:
    proc = run_cli("report", "--root", str(mini_root), "--fold", "3", "--no-per-class")
    assert proc.returncode == 0, proc.stderr
    assert "fold 3" in proc.stdout and "status: OK" in proc.stdout and "test  -" in proc.stdout

    absent = tmp_path / "nowhere"
    proc = run_cli("summary", "--root", str(absent))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert f"python -m lib.data download --root {absent}" in proc.stderr
    assert "python -m lib.data synth --out" in proc.stderr

    proc = run_cli("summary", "--root", str(mini_root), "--val-fraction", "1")
    assert proc.returncode == 2 and "--val-fraction" in proc.stderr


# =============================================================================================
# The official lists (../shared/reference/ucf101); skipped when absent
# =============================================================================================
OFFICIAL_COUNTS = {1: (9537, 3783), 2: (9586, 3734), 3: (9624, 3696)}


@pytest.fixture(scope="module")
def official_root(shared_reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree laid out like real UCF101: the official lists (byte-exact) and 13,320 empty videos."""
    src = shared_reference / "ucf101"
    root = tmp_path_factory.mktemp("ucf101_official")
    (root / LIST_DIR_NAME).mkdir()
    names = ["classInd.txt", *(f"{kind}list0{k}.txt" for kind in ("train", "test") for k in (1, 2, 3))]
    for name in names:
        shutil.copyfile(src / name, root / LIST_DIR_NAME / name)
    relpaths = {line.split(" ")[0] for name in names[1:] for line in (src / name).read_text().splitlines()}
    for cls in {rel.split("/")[0] for rel in relpaths}:
        (root / VIDEO_DIR_NAME / cls).mkdir(parents=True)
    for rel in relpaths:
        (root / VIDEO_DIR_NAME / rel).touch()
    return root


@pytest.mark.parametrize("fold", [1, 2, 3])
@pytest.mark.slow
def test_official_fold_counts(official_root: Path, fold: int) -> None:
    summary = summarize(official_root, fold)
    assert (summary["train"] + summary["val"], summary["test"]) == OFFICIAL_COUNTS[fold]
    assert summary["classes"] == 101 and summary["missing"] == 0 and summary["unlisted"] == 0 and summary["ok"]
    assert summary["test_groups"] == list(range(7 * fold - 6, 7 * fold + 1))
    assert len(summary["val_groups"]) == 2  # round(0.1 * 18)


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_official_groups_never_cross_splits(official_root: Path, fold: int) -> None:
    split = load_ucf101(official_root, fold)
    assert split.groups("test") == tuple(range(7 * fold - 6, 7 * fold + 1))
    assert not set(split.groups("test")) & (set(split.groups("train")) | set(split.groups("val")))
    assert not set(split.groups("train")) & set(split.groups("val"))
    assert set(split.groups("train")) | set(split.groups("val")) | set(split.groups("test")) == set(range(1, 26))


def test_official_dataset_facts(official_root: Path) -> None:
    split = load_ucf101(official_root, 1)
    everything = [*split.train, *split.val, *split.test]
    assert len(everything) == 13320 and split.num_classes == 101
    clips_per_group = Counter((r.class_name, r.group) for r in everything)
    groups_per_class = defaultdict(set)
    for cls, group in clips_per_group:
        groups_per_class[cls].add(group)
    assert all(groups == set(range(1, 26)) for groups in groups_per_class.values())
    assert min(clips_per_group.values()) == 4 and max(clips_per_group.values()) == 7

    handstand = [r for r in everything if r.class_name == "HandstandPushups"]
    assert len(handstand) == 128
    assert all(r.file_name.startswith("v_HandStandPushups_") for r in handstand)

    classes = split.classes
    by_sorting = sorted(classes)
    swapped = {c for c, s in zip(classes, by_sorting) if c != s}
    assert swapped == {"HammerThrow", "Hammering", "JumpRope", "JumpingJack"}
    assert classes.index("Hammering") < classes.index("HammerThrow")
    assert by_sorting.index("HammerThrow") < by_sorting.index("Hammering")
    assert classes.index("JumpingJack") < classes.index("JumpRope")
    assert (classes[0], classes[-1]) == ("ApplyEyeMakeup", "YoYo")


@pytest.mark.slow
def test_official_missing_files_are_counted(official_root: Path) -> None:
    split = load_ucf101(official_root, 1)
    victims = [split.train[5], split.val[0], split.test[10], split.test[-1]]
    try:
        for rec in victims:
            rec.path.unlink()
        summary = summarize(official_root, 1)
        assert summary["missing"] == 4 and not summary["ok"]
        assert (summary["train"] + summary["val"], summary["test"]) == OFFICIAL_COUNTS[1]  # still listed
        report = integrity_report(official_root, 1)
        assert report.missing_by_split == {"train": 1, "val": 1, "test": 2}
        assert set(report.missing_examples) == {r.relpath for r in victims}
        assert summarize(official_root, 2)["missing"] == 4
    finally:
        for rec in victims:
            rec.path.touch()
    assert summarize(official_root, 1)["missing"] == 0


@pytest.mark.slow
def test_official_cli_summary(official_root: Path) -> None:
    proc = run_cli("summary", "--root", str(official_root), "--fold", "1")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["train"] + summary["val"], summary["test"], summary["missing"], summary["classes"]) == (
        9537, 3783, 0, 101)


def test_official_lists_parse_byte_exact(shared_reference: Path) -> None:
    raw = (shared_reference / "ucf101" / "trainlist01.txt").read_bytes()
    assert raw.count(b"\r\n") == 9537  # the fixture copies CRLF lists unchanged
    assert len(read_class_index(shared_reference / "ucf101" / "classInd.txt")) == 101
