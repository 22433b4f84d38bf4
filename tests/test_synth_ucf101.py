"""The UCF101-layout stand-in: official names and lists, real-format videos, subsets, resume."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lib.data.__main__ import main as data_main
from lib.data.errors import DataError, DatasetError
from lib.data.synth import MANIFEST_NAME
from lib.data.synth_ucf101 import (
    CLASS_NAMES,
    CLIPS_PER_GROUP,
    DURATION_S,
    FPS_CHOICES,
    LayoutSelection,
    file_class_name,
    generate_layout,
    is_layout_complete,
    layout_specs,
    official_relpaths,
    parse_groups,
    split_counts,
    write_official_lists,
)
from lib.data.ucf101 import load_ucf101, read_class_index
from lib.data.ucf101_report import summarize
from lib.data.video import VideoReader

LIST_FILES = ["classInd.txt", *(f"{kind}list0{k}.txt" for kind in ("train", "test") for k in (1, 2, 3))]
# 2 classes (one with the file-name quirk) x groups 1 (fold-1 test), 8-9 (fold-1 train) x 1 clip
TINY = LayoutSelection(classes=("HandstandPushups", "YoYo"), groups=(1, 8, 9), clips_per_group=1)


def test_table_holds_the_official_counts() -> None:
    assert len(CLIPS_PER_GROUP) == len(set(CLASS_NAMES)) == 101
    assert all(len(counts) == 25 and set(counts) <= set("4567") for _, counts in CLIPS_PER_GROUP)
    relpaths = official_relpaths()
    assert len(relpaths) == len(set(relpaths)) == 13_320
    assert split_counts() == {1: {"train": 9537, "test": 3783}, 2: {"train": 9586, "test": 3734},
                              3: {"train": 9624, "test": 3696}}


def test_handstand_pushups_file_name_quirk() -> None:
    assert file_class_name("HandstandPushups") == "HandStandPushups" and file_class_name("YoYo") == "YoYo"
    quirk = [r for r in official_relpaths() if r.startswith("HandstandPushups/")]
    assert len(quirk) == 128 and all(r.split("/")[1].startswith("v_HandStandPushups_g") for r in quirk)
    assert all(r.split("/")[0] == r.split("/")[1].split("_")[1] for r in official_relpaths()
               if not r.startswith("HandstandPushups/"))


@pytest.mark.slow
def test_lists_load_with_official_labels_and_counts(tmp_path: Path) -> None:
    write_official_lists(tmp_path / "ucfTrainTestlist")
    (tmp_path / "UCF-101").mkdir()
    classes = read_class_index(tmp_path / "ucfTrainTestlist" / "classInd.txt")
    assert classes == list(CLASS_NAMES)
    # classInd is case-insensitive alphabetical order; Python's sorted() would swap these pairs
    assert classes.index("Hammering") < classes.index("HammerThrow") and sorted(classes) != classes
    for fold, test_count in ((1, 3783), (2, 3734), (3, 3696)):
        split = load_ucf101(tmp_path, fold)
        assert len(split.train) + len(split.val) + len(split.test) == 13_320 and len(split.test) == test_count
    raw = (tmp_path / "ucfTrainTestlist" / "trainlist01.txt").read_bytes()
    assert raw.startswith(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n")
    assert raw.endswith(b"YoYo/v_YoYo_g25_c05.avi 101\r\n") and raw.count(b"\n") == raw.count(b"\r\n") == 9537


def test_lists_equal_the_official_files(shared_reference: Path, tmp_path: Path) -> None:
    write_official_lists(tmp_path)
    for name in LIST_FILES:
        assert (tmp_path / name).read_bytes() == (shared_reference / "ucf101" / name).read_bytes(), name


def test_subset_lists_are_the_official_lines_of_the_subset(tmp_path: Path) -> None:
    write_official_lists(tmp_path / "full")
    write_official_lists(tmp_path / "subset", TINY)
    assert (tmp_path / "subset" / "classInd.txt").read_bytes() == (tmp_path / "full" / "classInd.txt").read_bytes()
    wanted = set(official_relpaths(TINY))
    for name in LIST_FILES[1:]:
        full = (tmp_path / "full" / name).read_bytes().split(b"\r\n")
        subset = (tmp_path / "subset" / name).read_bytes().split(b"\r\n")
        assert subset[:-1] == [line for line in full[:-1] if line.split(b" ")[0].decode() in wanted]


@pytest.mark.slow
def test_specs_are_deterministic_and_real_format() -> None:
    specs = layout_specs()
    assert specs == layout_specs() and [s.relpath for s in specs] == official_relpaths()
    assert {s.fps for s in specs} == set(FPS_CHOICES) == {Fraction(25), Fraction(30000, 1001)}
    share_2997 = sum(s.fps != 25 for s in specs) / len(specs)
    assert 0.2 < share_2997 < 0.4
    durations = sorted(s.num_frames / float(s.fps) for s in specs)
    assert DURATION_S[0] - 0.01 <= durations[0] and durations[-1] <= DURATION_S[1] + 0.05
    assert 1.5 < durations[len(durations) // 2] < 2.2
    for spec in specs[:50]:  # one group records at one frame rate
        assert spec.fps == next(s.fps for s in specs if s.relpath.split("_c")[0] == spec.relpath.split("_c")[0])
    assert layout_specs(seed=1) != specs


def test_selection_validation() -> None:
    assert parse_groups("1,8-10") == (1, 8, 9, 10)
    with pytest.raises(ValueError):
        parse_groups("0-3")
    with pytest.raises(DataError, match="HandStandPushups"):
        LayoutSelection(classes=("HandStandPushups",))  # the folder is HandstandPushups
    assert LayoutSelection(classes=("YoYo", "ApplyEyeMakeup")).classes == ("ApplyEyeMakeup", "YoYo")  # label order


def test_generated_subset_is_a_valid_ucf101_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ucf"
    assert data_main(["synth", "--preset", "ucf101-layout", "--out", str(root), "--classes", "HandstandPushups,YoYo",
                      "--groups", "1,8-9", "--clips-per-group", "1", "--workers", "1"]) == 0
    assert is_layout_complete(root, TINY)
    assert sorted(p.name for p in (root / "UCF-101").iterdir()) == sorted(CLASS_NAMES)  # all 101 folders
    summary = summarize(root, 1)
    assert (summary["classes"], summary["train_val"], summary["test"], summary["missing"]) == (101, 4, 2, 0)
    assert summary["ok"] and summary["val_groups"] and summary["train_groups"]
    for spec in layout_specs(TINY):
        path = root / "UCF-101" / spec.relpath
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.codec_context.codec_tag) == ("mpeg4", "XVID")
            assert (stream.width, stream.height, stream.average_rate) == (320, 240, spec.fps)
        with VideoReader(path) as reader:  # the study's strict reader: every frame decodes
            assert reader.num_frames == spec.num_frames and abs(reader.fps - float(spec.fps)) < 1e-3
            assert reader.read_frames(np.arange(reader.num_frames)).shape == (spec.num_frames, 240, 320, 3)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert manifest["complete"] and manifest["selection"]["classes"] == ["HandstandPushups", "YoYo"]
    # a rerun finds it complete; another selection in the same folder is refused
    mtimes = {p: p.stat().st_mtime_ns for p in (root / "UCF-101").rglob("*.avi")}
    generate_layout(root, TINY, workers=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (root / "UCF-101").rglob("*.avi")} == mtimes
    with pytest.raises(DatasetError, match="different settings"):
        generate_layout(root, LayoutSelection(classes=("YoYo",), groups=(1, 8, 9), clips_per_group=1), workers=1,
                        progress=False)


def test_killed_generation_resumes(tmp_path: Path) -> None:
    selection = LayoutSelection(classes=("YoYo",), groups=(1, 8, 9), clips_per_group=1)
    root = generate_layout(tmp_path / "ucf", selection, workers=1, progress=False)
    first = {p.name: p.read_bytes() for p in (root / "UCF-101" / "YoYo").iterdir()}
    victim = root / "UCF-101" / "YoYo" / "v_YoYo_g08_c01.avi"
    victim.unlink()
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    (root / MANIFEST_NAME).write_text(json.dumps({**manifest, "complete": False}))
    (root / "UCF-101" / "YoYo" / ".v_YoYo_g08_c01.tmp123.avi").write_bytes(b"half")  # a killed writer's temp file
    assert not is_layout_complete(root, selection)
    generate_layout(root, selection, workers=1, progress=False)
    assert {p.name: p.read_bytes() for p in (root / "UCF-101" / "YoYo").iterdir()} == first
