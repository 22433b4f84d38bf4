"""The synthetic action dataset: motion semantics, class-blind appearance, files, determinism, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lib.data import synth
from lib.data.errors import DataError, DatasetError
from lib.data.synth import (
    DEFAULT,
    FPS,
    FRAME_H,
    FRAME_W,
    MANIFEST_NAME,
    MOTION_CLASSES,
    SMOKE,
    SynthPreset,
    VideoSpec,
    ensure_synthetic,
    generate,
    get_preset,
    group_style,
    is_complete,
    object_trajectory,
    render_video,
    sample_scene,
    video_num_frames,
    video_specs,
)
from lib.data.synth_render import SCALE_RANGE, iter_frames
from lib.data.synth_style import SpriteStyle, draw_sprite, transform_sprite
from lib.data.ucf101 import parse_video_name

# 2 classes x 9 groups x 1 video of 2 s: fold 1 tests groups 1-7, groups 8-9 are its train part.
TINY = SynthPreset("tiny", ("MoveRight", "RotateClockwise"), groups=9, clips_per_group=(1, 1), duration_s=(2.0, 2.0))
# Two groups x two seeds per class, 3 s long: enough to cross sawtooth resets, bounces and edges.
SPECS_PER_CLASS = [VideoSpec(c, g, 1, seed=s, duration_s=(3.0, 3.0))
                   for c in MOTION_CLASSES for g in (1, 5) for s in (0, 7)]
ONE_SECOND = FPS  # frames in one 1-second clip's time span


def _specs(class_name: str) -> list[VideoSpec]:
    return [s for s in SPECS_PER_CLASS if s.class_name == class_name]


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "UCF-101").rglob("*.avi"))}


# ---------------------------------------------------------------------------------------------
# Presets and specs
# ---------------------------------------------------------------------------------------------
def test_presets_are_frozen_and_sized_as_documented() -> None:
    assert set(DEFAULT.classes) == set(MOTION_CLASSES) and len(DEFAULT.classes) == 10
    assert DEFAULT.groups == 25 and DEFAULT.clips_per_group == (4, 7) and DEFAULT.duration_s == (2.0, 8.0)
    assert SMOKE.groups >= 8 and len(SMOKE.classes) == 4  # fold 1 tests 1-7: 8+ leaves train and val
    assert all(re.fullmatch(r"[A-Z][a-z]+(?:[A-Z][a-z]+)*", c) for c in MOTION_CLASSES)  # CamelCase like UCF101
    with pytest.raises(dataclasses.FrozenInstanceError):
        SMOKE.groups = 3  # type: ignore[misc]
    assert get_preset("smoke") is SMOKE and get_preset(TINY) is TINY
    with pytest.raises(DataError, match="unknown synthetic preset"):
        get_preset("huge")
    with pytest.raises(ValueError):
        SynthPreset("bad", ("Jump",), groups=9, clips_per_group=(1, 1), duration_s=(2.0, 2.0))
    with pytest.raises(ValueError):
        SynthPreset("bad", ("Grow",), groups=9, clips_per_group=(1, 1), duration_s=(0.5, 2.0))


def test_video_specs_follow_the_preset() -> None:
    specs = video_specs(DEFAULT, seed=0)
    assert specs == video_specs("default", seed=0)  # deterministic
    per_pair: dict[tuple[str, int], int] = {}
    for spec in specs:
        assert parse_video_name(spec.file_name) == (spec.class_name, spec.group, spec.clip)
        per_pair[(spec.class_name, spec.group)] = per_pair.get((spec.class_name, spec.group), 0) + 1
    assert len(per_pair) == 10 * 25 and all(4 <= n <= 7 for n in per_pair.values())
    lengths = np.array([video_num_frames(s) for s in specs[:200]]) / FPS
    assert lengths.min() >= 2.0 and lengths.max() <= 8.0 and lengths.std() > 1.0  # lengths vary per video


# ---------------------------------------------------------------------------------------------
# Motion semantics (ground truth; image coordinates, y down)
# ---------------------------------------------------------------------------------------------
def _wrapped_diff(values: np.ndarray, period: float) -> np.ndarray:
    return (np.diff(values) + period / 2) % period - period / 2


@pytest.mark.parametrize(("class_name", "axis", "sign"),
                         [("MoveRight", 0, 1), ("MoveLeft", 0, -1), ("MoveDown", 1, 1), ("MoveUp", 1, -1)])
def test_translations_move_one_way_and_wrap(class_name: str, axis: int, sign: int) -> None:
    for spec in _specs(class_name):
        traj = object_trajectory(spec)
        size = (FRAME_W, FRAME_H)[axis]
        step = _wrapped_diff(traj.centre_xy[:, axis], size) * sign
        assert traj.wraps and np.all(step > 0.5) and np.all(step < 10)  # steadily, 40-125 px/s
        assert np.all((traj.centre_xy[:, axis] >= 0) & (traj.centre_xy[:, axis] < size))
        assert np.ptp(traj.centre_xy[:, 1 - axis]) == 0 and np.ptp(traj.angle_deg) == 0 and np.ptp(traj.scale) == 0


@pytest.mark.parametrize(("class_name", "sign"), [("RotateClockwise", 1), ("RotateCounterClockwise", -1)])
def test_rotations_turn_one_way_in_place(class_name: str, sign: int) -> None:
    for spec in _specs(class_name):
        traj = object_trajectory(spec)
        turn = np.diff(traj.angle_deg) * sign  # angle_deg grows clockwise on screen
        assert np.all(turn > 2.0) and np.all(turn < 10.0)  # 70-225 deg/s: visible, no aliasing
        assert np.ptp(traj.centre_xy, axis=0).max() == 0 and np.ptp(traj.scale) == 0


def test_positive_angle_turns_the_drawn_sprite_clockwise_on_screen() -> None:
    # A wedge pointing to +x (right); turned 90 deg clockwise on screen it must point to +y (down).
    wedge = SpriteStyle(shape="wedge", vertices=np.array([[0.2, -0.4], [1.0, 0.0], [0.2, 0.4]]),
                        fill_hsv=(0.0, 1.0, 1.0), outline_value=0.1, accent_xy=(0.5, 0.0), accent_radius=0.1,
                        stripe_angle_deg=0.0)
    master = draw_sprite(wedge, size_px=64)

    def centroid(rgba: np.ndarray) -> np.ndarray:  # alpha-weighted, relative to the array centre
        alpha = rgba[..., 3].astype(float)
        ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]]
        return np.array([(xs * alpha).sum(), (ys * alpha).sum()]) / alpha.sum() - (np.array(alpha.shape[::-1]) - 1) / 2

    rest = centroid(transform_sprite(master, size_px=64, angle_deg=0))
    clockwise = centroid(transform_sprite(master, size_px=64, angle_deg=90))
    counter = centroid(transform_sprite(master, size_px=64, angle_deg=-90))
    assert rest[0] > 10 and abs(rest[1]) < 1
    assert clockwise[1] > 10 and abs(clockwise[0]) < 1.5
    assert counter[1] < -10 and abs(counter[0]) < 1.5


@pytest.mark.parametrize(("class_name", "sign"), [("Grow", 1), ("Shrink", -1)])
def test_grow_and_shrink_are_sawtooths_of_a_few_seconds(class_name: str, sign: int) -> None:
    for spec in _specs(class_name):
        traj = object_trajectory(spec)
        change = np.diff(np.log(traj.scale)) * sign
        resets = np.flatnonzero(change < 0)
        assert len(resets) <= 2  # period >= 1.6 s over a 3-s video
        assert np.all(change[change > 0] > 0.005)  # never a standstill inside a ramp
        for start in range(0, traj.n_frames - ONE_SECOND + 1):  # every 1-s window: mostly the class direction
            assert np.count_nonzero(change[start:start + ONE_SECOND - 1] > 0) >= ONE_SECOND - 2
        assert traj.scale.max() / traj.scale.min() > 1.8
        assert np.ptp(traj.centre_xy, axis=0).max() == 0


def test_bounce_reverses_vertical_direction_every_second() -> None:
    for spec in _specs("Bounce"):
        traj = object_trajectory(spec)
        vy = np.diff(traj.centre_xy[:, 1])
        assert np.ptp(traj.centre_xy[:, 0]) == 0
        for start in range(0, traj.n_frames - ONE_SECOND):
            window = vy[start:start + ONE_SECOND]
            assert (window > 0).any() and (window < 0).any()  # up and down inside every clip


def test_orbit_moves_on_a_circle() -> None:
    for spec in _specs("Orbit"):
        traj = object_trajectory(spec)
        x, y = traj.centre_xy.T
        # Algebraic circle fit: x^2 + y^2 = 2ax + 2by + c.
        (a, b, c), *_ = np.linalg.lstsq(np.stack([2 * x, 2 * y, np.ones_like(x)], 1), x**2 + y**2, rcond=None)
        radius = np.hypot(x - a, y - b)
        assert np.ptp(radius) < 1e-6 and radius[0] >= 25
        swept = np.abs(np.diff(np.unwrap(np.arctan2(y - b, x - a))))
        assert swept[:ONE_SECOND].sum() >= np.pi * 0.95  # at least half a turn per clip


@pytest.mark.parametrize("class_name", MOTION_CLASSES)
def test_object_stays_visible_and_single_frame_size_is_uninformative(class_name: str) -> None:
    for spec in _specs(class_name):
        traj = object_trajectory(spec)
        assert np.all((traj.scale >= SCALE_RANGE[0] - 1e-9) & (traj.scale <= SCALE_RANGE[1] + 1e-9))
        if not traj.wraps:  # the whole sprite box stays inside the frame, camera shake included
            half = traj.base_px * traj.scale / 2
            drawn = traj.drawn_centre_xy
            assert np.all(drawn[:, 0] - half >= 0) and np.all(drawn[:, 0] + half <= FRAME_W)
            assert np.all(drawn[:, 1] - half >= 0) and np.all(drawn[:, 1] + half <= FRAME_H)


def test_render_video_matches_its_trajectory() -> None:
    spec = VideoSpec("MoveRight", 2, 1, seed=0, duration_s=(2.0, 2.0))
    video = render_video(spec)
    assert video.frames.shape == (50, FRAME_H, FRAME_W, 3) and video.frames.dtype == np.uint8
    assert np.array_equal(video.trajectory.centre_xy, object_trajectory(spec).centre_xy)
    assert np.array_equal(video.frames, render_video(spec).frames)  # pure


# ---------------------------------------------------------------------------------------------
# Appearance is a property of the group, not of the class
# ---------------------------------------------------------------------------------------------
def test_group_background_is_shared_across_classes_and_differs_between_groups() -> None:
    for group in (1, 2, 3):
        backgrounds = [sample_scene(VideoSpec(c, group, 1, seed=0)).style.background for c in MOTION_CLASSES]
        assert all(np.array_equal(b, backgrounds[0]) for b in backgrounds)
    assert not np.array_equal(group_style(0, 1).background, group_style(0, 2).background)
    assert not np.array_equal(group_style(0, 1).background, group_style(1, 1).background)  # seed matters


def test_first_frame_colour_tells_the_group_not_the_class() -> None:
    def first_frame_mean(class_name: str, group: int) -> np.ndarray:
        scene = sample_scene(VideoSpec(class_name, group, 1, seed=0, duration_s=(2.0, 2.0)))
        return next(iter_frames(scene)).reshape(-1, 3).mean(axis=0)

    groups, classes = range(1, 7), MOTION_CLASSES[::3]
    means = np.array([[first_frame_mean(c, g) for c in classes] for g in groups])  # (group, class, rgb)
    within = np.abs(means - means.mean(axis=1, keepdims=True)).max(axis=(1, 2))  # spread across classes
    between = np.abs(means.mean(axis=1)[:, None] - means.mean(axis=1)[None]).max(axis=2)
    assert within.max() < 4.0  # only the object's/distractors' per-video placement moves the mean
    assert np.median(between[np.triu_indices(len(groups), 1)]) > 3 * within.mean()


# ---------------------------------------------------------------------------------------------
# Files on disk
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY, seed 0, rendered in this process (workers=1)."""
    return generate(tmp_path_factory.mktemp("tiny") / "ds", preset=TINY, seed=0, workers=1, progress=False)


@pytest.mark.slow
def test_files_decode_as_ucf101_videos(tiny_root: Path) -> None:
    decord = pytest.importorskip("decord")
    specs = video_specs(TINY, seed=0)
    assert sorted(_digests(tiny_root)) == sorted(f"UCF-101/{s.relpath}" for s in specs)
    for spec in specs[::4]:
        reader = decord.VideoReader(str(tiny_root / "UCF-101" / spec.relpath))
        assert len(reader) == video_num_frames(spec) == 50
        assert reader.get_avg_fps() == pytest.approx(FPS)
        assert reader[0].shape == (FRAME_H, FRAME_W, 3)


@pytest.mark.slow
def test_split_lists_and_manifest(tiny_root: Path) -> None:
    lists = tiny_root / "ucfTrainTestlist"
    raw = (lists / "classInd.txt").read_bytes()
    assert raw == b"1 MoveRight\r\n2 RotateClockwise\r\n"
    test1 = (lists / "testlist01.txt").read_bytes().decode().split("\r\n")[:-1]
    train1 = (lists / "trainlist01.txt").read_bytes().decode().split("\r\n")[:-1]
    assert {parse_video_name(line.split("/")[1])[1] for line in test1} == set(range(1, 8))
    assert {parse_video_name(line.split(" ")[0].split("/")[1])[1] for line in train1} == {8, 9}
    manifest = json.loads((tiny_root / MANIFEST_NAME).read_text())
    assert manifest["complete"] is True and manifest["seed"] == 0 and manifest["preset"]["name"] == "tiny"
    assert manifest["num_videos"] == 18 and manifest["num_frames"] == 18 * 50
    assert is_complete(tiny_root, preset=TINY, seed=0) and not is_complete(tiny_root, preset=TINY, seed=1)


@pytest.mark.slow
def test_same_seed_is_byte_identical_across_worker_counts(tiny_root: Path, tmp_path: Path) -> None:
    two = generate(tmp_path / "two", preset=TINY, seed=0, workers=2, progress=False)
    assert _digests(two) == _digests(tiny_root)
    other = _digests(generate(tmp_path / "seed1", preset=TINY, seed=1, workers=1, progress=False))
    reference = _digests(tiny_root)
    assert sorted(other) == sorted(reference) and all(other[k] != reference[k] for k in reference)


@pytest.mark.slow
def test_rerun_resumes_and_keeps_finished_videos(tiny_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(tiny_root, root)
    videos = sorted((root / "UCF-101").rglob("*.avi"))
    removed, kept = videos[:2], videos[2:]
    for path in removed:
        path.unlink()
    stale = kept[0].parent / f".{kept[0].stem}.abc123.avi"  # a temp file a killed writer left
    stale.write_bytes(b"partial")
    manifest_path = root / MANIFEST_NAME
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "complete": False}))
    kept_mtimes = {p: p.stat().st_mtime_ns for p in kept}

    generate(root, preset=TINY, seed=0, workers=1, progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in kept_mtimes.items())  # not rewritten
    assert _digests(root) == _digests(tiny_root) and not stale.exists()
    assert json.loads(manifest_path.read_text())["complete"] is True


@pytest.mark.slow
def test_other_settings_or_foreign_folder_is_a_clear_error(tiny_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"different settings.*seed.*rm -rf") as info:
        generate(tiny_root, preset=TINY, seed=3, workers=1, progress=False)
    assert info.value.path == tiny_root
    foreign = tmp_path / "foreign"
    (foreign / "UCF-101").mkdir(parents=True)
    with pytest.raises(DatasetError, match="not empty"):
        generate(foreign, preset=TINY, seed=0, workers=1, progress=False)


@pytest.mark.slow
def test_ensure_synthetic_generates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lib.paths

    monkeypatch.setattr(lib.paths, "synthetic_dataset_dir", lambda name: tmp_path / f"synth_{name}")
    root = ensure_synthetic(TINY, seed=0, workers=1, progress=False)
    assert root == tmp_path / "synth_tiny" and is_complete(root, preset=TINY, seed=0)

    def must_not_run(*args: object, **kwargs: object) -> Path:
        raise AssertionError("a complete dataset must not be generated again")

    monkeypatch.setattr(synth, "generate", must_not_run)
    assert ensure_synthetic(TINY, seed=0) == root


@pytest.mark.slow
def test_smoke_preset_via_cli_gives_nonempty_fold1_splits(tmp_path: Path) -> None:
    from lib.data.__main__ import main
    from lib.data.ucf101 import load_ucf101

    root = tmp_path / "smoke"
    assert main(["synth", "--out", str(root), "--preset", "smoke", "--seed", "0", "--workers", "2"]) == 0
    split = load_ucf101(root, 1, check_files=True)
    assert split.classes == list(SMOKE.classes)
    assert split.train and split.val and split.test
    assert split.groups("test") == tuple(range(1, 8))
    assert main(["synth", "--out", str(root), "--preset", "smoke", "--seed", "1"]) == 2  # refused, no traceback
