"""A stand-in for UCF101 in its exact official layout: every class, group and clip name, the
official split lists, and real-format videos with placeholder content.

What it reproduces, so the UCF101 path of the study (``params/ucf101_reducio.yaml``) runs on a
machine without the 6.5 GB dataset:

- the 101 class folders with their official names, the 13,320 ``v_<Class>_gXX_cYY.avi`` files
  (25 groups per class, 4-7 clips per group, as in the official lists), including the folder
  ``HandstandPushups`` whose files are named ``v_HandStandPushups_*``;
- ``ucfTrainTestlist/`` (classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt) byte for byte:
  the lists are regenerated from :data:`CLIPS_PER_GROUP` (per class, the number of clips of each
  of its 25 groups) by :func:`lib.data.ucf101.write_split_lists`, whose ordering, labels and CRLF
  line endings are the official files';
- the video format: MPEG-4 Part 2 with the XVID tag in AVI, 320x240, 25 fps or 29.97 fps
  (30000/1001; drawn per group, as a group is one recording), lengths drawn per video from a
  log-normal shaped like UCF101's (real: ~1-30 s, median ~6 s) but scaled to 1.1-3 s so that the
  whole tree takes minutes to write.

Content is a placeholder, not an action: a per-group background drifting sideways and a
rectangle in a per-class colour moving in a per-class direction. Labels are therefore learnable,
so a classifier at chance level in a rehearsal points at a label-plumbing fault.

A subset (``classes``, ``groups``, ``clips_per_group``) writes only those videos; all 101 class
folders still exist (empty where unselected), classInd.txt still lists all 101 classes (labels
stay the official ones) and each list keeps exactly the official lines of the videos written, in
the official order, so the integrity report of a subset finds nothing missing. Generation is deterministic,
atomic per file and resumable (:func:`lib.data.synth.write_videos`); a folder made with another
seed or selection is refused.

CLI: ``python -m lib.data synth --preset ucf101-layout --out DIR [--classes A,B] [--groups 1,8-10]
[--clips-per-group K] [--seed S] [--workers N]``.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lib.data.errors import DataError
from lib.data.synth import CODEC, MANIFEST_NAME, write_videos
from lib.data.synth_style import FRAME_H, FRAME_W
from lib.data.ucf101 import (
    LIST_DIR_NAME,
    NUM_FOLDS,
    VIDEO_DIR_NAME,
    parse_video_name,
    testing_fold_of_group,
    write_split_lists,
)

__all__ = [
    "CLASS_NAMES", "CLIPS_PER_GROUP", "FPS_CHOICES", "GENERATOR_VERSION", "LAYOUT_PRESET", "LayoutSelection",
    "LayoutVideoSpec", "ensure_layout", "file_class_name", "generate_layout", "is_layout_complete",
    "layout_specs", "official_relpaths", "parse_groups", "split_counts", "write_official_lists",
]

LAYOUT_PRESET = "ucf101-layout"  # the --preset name of ``python -m lib.data synth``
GENERATOR_VERSION = 1  # bump whenever the written bytes change: old folders are then refused
NUM_GROUPS = 25
FPS_CHOICES: tuple[Fraction, Fraction] = (Fraction(25), Fraction(30000, 1001))
FPS_2997_SHARE = 0.3  # share of groups recorded at 29.97 fps
DURATION_S = (1.1, 3.0)  # clipped range of a video's length
DURATION_MEDIAN_S, DURATION_SIGMA = 1.8, 0.35  # log-normal: UCF101's shape (median ~6 s) scaled by 0.3
_GROUP_DOMAIN, _VIDEO_DOMAIN = 0x0CF1_0001, 0x0CF1_0002  # seed streams of groups and videos

# The official lists as data: per class (classInd order), the clip count of each of its groups
# g01..g25, one digit per group. 13,320 videos; fold k tests groups 7k-6..7k.
CLIPS_PER_GROUP: tuple[tuple[str, str], ...] = (
    ("ApplyEyeMakeup", "6467777575566575554655677"),
    ("ApplyLipstick", "5445554444454455544557454"),
    ("Archery", "7755566577747475474745767"),
    ("BabyCrawling", "4644566465466466565747466"),
    ("BalanceBeam", "4444474444445444644454544"),
    ("BandMarching", "7774747777765677467665667"),
    ("BaseballPitch", "6475777775547476775447777"),
    ("Basketball", "7664444455554576457767647"),
    ("BasketballDunk", "7464646555554776764644554"),
    ("BenchPress", "6777777774577765776747577"),
    ("Biking", "4745756646646455664775474"),
    ("Billiards", "6757654675777775577475467"),
    ("BlowDryHair", "4555577747764554554564744"),
    ("BlowingCandles", "4445574444464444444444446"),
    ("BodyWeightSquats", "4454454475444444444644457"),
    ("Bowling", "7474777777746574757767775"),
    ("BoxingPunchingBag", "7777777774574777467777777"),
    ("BoxingSpeedBag", "4457557574657675745544547"),
    ("BreastStroke", "4444444444444444454444444"),
    ("BrushingTeeth", "4754556645464544575547677"),
    ("CleanAndJerk", "5465445444474644444644444"),
    ("CliffDiving", "6454776467674744577746554"),
    ("CricketBowling", "7745454574765567567567447"),
    ("CricketShot", "7777777777777777655767577"),
    ("CuttingInKitchen", "5445654447444444444444446"),
    ("Diving", "7777674677677475444776674"),
    ("Drumming", "7757667547777677767774777"),
    ("Fencing", "6555544465554444444444444"),
    ("FieldHockeyPenalty", "5647774457464764444444456"),
    ("FloorGymnastics", "5445477475464564674554445"),
    ("FrisbeeCatch", "6555556556454546556656444"),
    ("FrontCrawl", "4467457565744744774766764"),
    ("GolfSwing", "6476745644744444766766777"),
    ("Haircut", "4465446677544445456747774"),
    ("Hammering", "4455465477457774776477674"),
    ("HammerThrow", "6777675677677654557557745"),
    ("HandstandPushups", "4444444544677467574765547"),
    ("HandstandWalking", "4445746444444444474444464"),
    ("HeadMassage", "5774675744774774775567747"),
    ("HighJump", "5746546554745445445545655"),
    ("HorseRace", "4456466544745445566554574"),
    ("HorseRiding", "7777777667774766667767677"),
    ("HulaHoop", "7455445564466556544745645"),
    ("IceDancing", "7767667767475646567777777"),
    ("JavelinThrow", "4444645445644666544444565"),
    ("JugglingBalls", "4675567564554544444446445"),
    ("JumpingJack", "7444675476447444447444447"),
    ("JumpRope", "4747556774755467574776576"),
    ("Kayaking", "6447474665744477675777664"),
    ("Knitting", "4556545457645575644444447"),
    ("LongJump", "7567545667666555556444444"),
    ("Lunges", "7444477446756744457454644"),
    ("MilitaryParade", "7444446575554574567444447"),
    ("Mixing", "7677765575776774444444444"),
    ("MoppingFloor", "4646545444444444664444444"),
    ("Nunchucks", "4676444756657464764464556"),
    ("ParallelBars", "4447576564644444444444444"),
    ("PizzaTossing", "4547454444544444445444765"),
    ("PlayingCello", "7747775677777477777757777"),
    ("PlayingDaf", "4747775757654776477777647"),
    ("PlayingDhol", "7777777777767746767477757"),
    ("PlayingFlute", "7777767776655676757465657"),
    ("PlayingGuitar", "6477577747777777777765747"),
    ("PlayingPiano", "4444444444444447644444444"),
    ("PlayingSitar", "4677767777744747777776774"),
    ("PlayingTabla", "4456444455455445464444445"),
    ("PlayingViolin", "4444444444444444444444444"),
    ("PoleVault", "5777554447575747777674777"),
    ("PommelHorse", "7445447444477444646747444"),
    ("PullUps", "4444444444444444444444444"),
    ("Punch", "5445777776777767777477777"),
    ("PushUps", "5445444444444444444444444"),
    ("Rafting", "4444444645445547645444444"),
    ("RockClimbingIndoor", "5574677747466545744677677"),
    ("RopeClimbing", "4644745445447555557444445"),
    ("Rowing", "4676445467677774746454556"),
    ("SalsaSpin", "7766656566664665444555454"),
    ("ShavingBeard", "4774777777466676777777776"),
    ("Shotput", "7765777776774477544445745"),
    ("SkateBoarding", "4645445547564464465545455"),
    ("Skiing", "6577474765447455446775465"),
    ("Skijet", "4444444444444444444444444"),
    ("SkyDiving", "4454545445444454564644444"),
    ("SoccerJuggling", "5646657474665747777657676"),
    ("SoccerPenalty", "6555776655576675454555664"),
    ("StillRings", "5474444446444444444474447"),
    ("SumoWrestling", "4444477744455444575444444"),
    ("Surfing", "7644444756475477744644444"),
    ("Swing", "5547777564644575444665554"),
    ("TableTennisShot", "6457764474544577447747777"),
    ("TaiChi", "4444444444444444444444444"),
    ("TennisSwing", "7777777677777777766666666"),
    ("ThrowDiscus", "4744577465765454574474555"),
    ("TrampolineJumping", "4645445466654456446546444"),
    ("Typing", "7674676777774744444744444"),
    ("UnevenBars", "4444444444444475444444444"),
    ("VolleyballSpiking", "4447547664647444444444444"),
    ("WalkingWithDog", "4655556565555445545744464"),
    ("WallPushups", "4454576555655557755674445"),
    ("WritingOnBoard", "7774677467646457574777777"),
    ("YoYo", "7565544565645446646466645"),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in CLIPS_PER_GROUP)
# Folders whose file names spell the class differently (the one quirk of the official names).
_FILE_CLASS_NAMES: dict[str, str] = {"HandstandPushups": "HandStandPushups"}


def file_class_name(class_dir: str) -> str:
    """The class as spelled in the file names of folder ``class_dir`` (``HandstandPushups`` ->
    ``HandStandPushups``; every other class as its folder)."""
    return _FILE_CLASS_NAMES.get(class_dir, class_dir)


def parse_groups(text: str) -> tuple[int, ...]:
    """``"1,8-10"`` -> ``(1, 8, 9, 10)``; groups must lie in 1..25."""
    groups: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"not a group list like 1,8-10: {text!r}") from None
        groups.update(range(first, last + 1))
    if not groups or min(groups) < 1 or max(groups) > NUM_GROUPS:
        raise ValueError(f"groups must be a non-empty selection of 1..{NUM_GROUPS}, got {text!r}")
    return tuple(sorted(groups))


@dataclass(frozen=True)
class LayoutSelection:
    """Which videos of the official layout to write; ``None`` fields select everything."""

    classes: tuple[str, ...] | None = None  # official folder names; stored in classInd order
    groups: tuple[int, ...] | None = None  # group numbers 1..25
    clips_per_group: int | None = None  # at most this many clips (c01, c02, ...) per (class, group)

    def __post_init__(self) -> None:
        if self.classes is not None:
            unknown = sorted(set(self.classes) - set(CLASS_NAMES))
            if unknown or not self.classes:
                raise DataError(None, f"unknown UCF101 class folder(s) {unknown}" if unknown else "no classes selected",
                                "use official folder names (case-sensitive, e.g. HandstandPushups), comma-separated")
            object.__setattr__(self, "classes", tuple(c for c in CLASS_NAMES if c in set(self.classes)))
        if self.groups is not None:
            groups = tuple(sorted(set(int(g) for g in self.groups)))
            if not groups or groups[0] < 1 or groups[-1] > NUM_GROUPS:
                raise DataError(None, f"groups must be a non-empty selection of 1..{NUM_GROUPS}, got {self.groups}",
                                "pass e.g. --groups 1,8-10")
            object.__setattr__(self, "groups", groups)
        if self.clips_per_group is not None and not 1 <= int(self.clips_per_group) <= 7:
            raise DataError(None, f"clips_per_group must be in 1..7, got {self.clips_per_group}",
                            "omit it for every clip, or pass 1..7")

    @property
    def is_full(self) -> bool:
        """True when every official video is selected (the lists are then the official files)."""
        return self.classes is None and self.groups is None and self.clips_per_group is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in the manifest)."""
        return {"classes": list(self.classes) if self.classes is not None else None,
                "groups": list(self.groups) if self.groups is not None else None,
                "clips_per_group": self.clips_per_group}


def official_relpaths(selection: LayoutSelection | None = None) -> list[str]:
    """``<ClassDir>/v_<Class>_gXX_cYY.avi`` of every (selected) video, in classInd, group, clip order."""
    selection = selection or LayoutSelection()
    out = []
    for class_dir, counts in CLIPS_PER_GROUP:
        if selection.classes is not None and class_dir not in selection.classes:
            continue
        name = file_class_name(class_dir)
        for group, digit in enumerate(counts, start=1):
            if selection.groups is not None and group not in selection.groups:
                continue
            n_clips = min(int(digit), selection.clips_per_group or 7)
            out += [f"{class_dir}/v_{name}_g{group:02d}_c{clip:02d}.avi" for clip in range(1, n_clips + 1)]
    return out


def write_official_lists(list_dir: str | os.PathLike[str], selection: LayoutSelection | None = None) -> None:
    """Write classInd.txt and the six train/test lists: the official files for the full selection,
    the official lines of the selected videos otherwise (classInd always lists all 101)."""
    write_split_lists(list_dir, list(CLASS_NAMES), official_relpaths(selection))


# =============================================================================================
# Videos
# =============================================================================================
def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One colour (h, s, v in [0, 1]) as float RGB in [0, 255]."""
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]) * 255.0


@dataclass(frozen=True)
class LayoutVideoSpec:
    """One video of the layout: where it goes, its format, and the seeds of its content."""

    relpath: str  # "<ClassDir>/v_<Class>_gXX_cYY.avi"
    label: int  # 0-based classInd index
    group: int
    clip: int
    seed: int
    fps: Fraction  # 25 or 30000/1001 (read by lib.data.synth's writer)
    num_frames: int

    def render_frames(self) -> Iterator[np.ndarray]:
        """The frames, (240, 320, 3) uint8 RGB each: a per-group background drifting sideways and
        a per-class coloured rectangle moving in a per-class direction (wrapping at the edges)."""
        g_rng = _rng(self.seed, _GROUP_DOMAIN, self.group)
        v_rng = _rng(self.seed, _VIDEO_DOMAIN, self.label, self.group, self.clip)
        top, bottom = (_hsv_to_rgb(g_rng.random(), 0.25 + 0.3 * g_rng.random(), 0.35 + 0.4 * g_rng.random())
                       for _ in range(2))
        period = int(g_rng.integers(12, 48))
        ramp = np.linspace(0.0, 1.0, FRAME_H)[:, None, None]
        stripes = 0.85 + 0.15 * (np.arange(FRAME_W) % period < period // 2)[None, :, None]
        background = np.clip((top * (1 - ramp) + bottom * ramp) * stripes, 0, 255).astype(np.uint8)
        drift = float(g_rng.uniform(-2.0, 2.0))  # px per frame, the "camera"
        colour = _hsv_to_rgb((self.label * 0.618034) % 1.0, 0.85, 0.95).astype(np.uint8)
        angle = 2 * math.pi * ((self.label * 0.381966) % 1.0)
        speed = float(v_rng.uniform(1.5, 4.0)) * (25.0 / float(self.fps))  # px per frame at 25 fps
        h, w = (int(v) for v in v_rng.integers(36, 72, size=2))
        y0, x0 = float(v_rng.uniform(0, FRAME_H)), float(v_rng.uniform(0, FRAME_W))
        rows_base, cols_base = np.arange(h), np.arange(w)
        for t in range(self.num_frames):
            frame = np.roll(background, int(round(drift * t)), axis=1)
            rows = (int(y0 + speed * math.sin(angle) * t) + rows_base) % FRAME_H
            cols = (int(x0 + speed * math.cos(angle) * t) + cols_base) % FRAME_W
            frame[np.ix_(rows, cols)] = colour
            yield frame


def layout_specs(selection: LayoutSelection | None = None, *, seed: int = 0) -> list[LayoutVideoSpec]:
    """Every (selected) video's spec, in the order of :func:`official_relpaths`."""
    label_of = {name: i for i, name in enumerate(CLASS_NAMES)}
    specs = []
    for rel in official_relpaths(selection):
        class_dir, file_name = rel.split("/")
        _, group, clip = parse_video_name(file_name)
        label = label_of[class_dir]
        fps = FPS_CHOICES[1] if _rng(seed, _GROUP_DOMAIN, zlib.crc32(class_dir.encode()), group).random() \
            < FPS_2997_SHARE else FPS_CHOICES[0]
        d_rng = _rng(seed, _VIDEO_DOMAIN, label, group, clip, 1)
        duration = min(max(DURATION_MEDIAN_S * math.exp(DURATION_SIGMA * d_rng.standard_normal()), DURATION_S[0]),
                       DURATION_S[1])
        num_frames = max(math.ceil(DURATION_S[0] * fps), round(duration * fps))
        specs.append(LayoutVideoSpec(rel, label, group, clip, seed, fps, num_frames))
    return specs


# =============================================================================================
# Generation
# =============================================================================================
def _settings(selection: LayoutSelection, seed: int) -> dict[str, Any]:
    """What determines the bytes of a tree: compared on every rerun (JSON round-tripped)."""
    return json.loads(json.dumps({
        "generator": "lib.data.synth_ucf101", "generator_version": GENERATOR_VERSION, "preset": LAYOUT_PRESET,
        "selection": selection.to_dict(), "seed": int(seed), "frame_size": [FRAME_W, FRAME_H],
        "fps": [str(f) for f in FPS_CHOICES], "duration_s": list(DURATION_S), "codec": CODEC,
    }))


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def is_layout_complete(root: str | os.PathLike[str], selection: LayoutSelection | None = None, *,
                       seed: int = 0) -> bool:
    """True when ``root`` holds a finished tree of exactly this selection and seed (all files present)."""
    selection, root = selection or LayoutSelection(), Path(root)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    settings = _settings(selection, _check_seed(seed))
    if not manifest.get("complete") or {k: manifest.get(k) for k in settings} != settings:
        return False
    lists = ["classInd.txt", *(f"{kind}list0{k}.txt" for kind in ("train", "test") for k in range(1, NUM_FOLDS + 1))]
    return (all((root / LIST_DIR_NAME / name).is_file() for name in lists)
            and all((root / VIDEO_DIR_NAME / name).is_dir() for name in CLASS_NAMES)
            and all((root / VIDEO_DIR_NAME / rel).is_file() for rel in official_relpaths(selection)))


def generate_layout(out: str | os.PathLike[str], selection: LayoutSelection | None = None, *, seed: int = 0,
                    workers: int | None = None, progress: bool = True) -> Path:
    """Write (or finish) the tree of ``selection``/``seed`` under ``out``; return its absolute path.

    ``workers``: processes (default: all cores; 1 renders in this process); the bytes do not
    depend on it. Raises :class:`~lib.data.errors.DatasetError` when ``out`` holds something else.
    """
    selection, seed = selection or LayoutSelection(), _check_seed(seed)
    root = Path(out).expanduser().absolute()
    specs = layout_specs(selection, seed=seed)
    video_dir = root / VIDEO_DIR_NAME
    def finish() -> None:
        for class_dir in CLASS_NAMES:  # every official folder, also those a subset leaves empty
            (video_dir / class_dir).mkdir(parents=True, exist_ok=True)
        write_official_lists(root / LIST_DIR_NAME, selection)

    return write_videos(
        root, settings=_settings(selection, seed), tasks=[(s, str(video_dir / s.relpath)) for s in specs],
        num_frames=[s.num_frames for s in specs], finish=finish,
        is_done=lambda: is_layout_complete(root, selection, seed=seed), workers=workers, progress=progress,
        desc=LAYOUT_PRESET)


def ensure_layout(root: str | os.PathLike[str], selection: LayoutSelection | None = None, *, seed: int = 0,
                  workers: int | None = None, progress: bool = True) -> Path:
    """``root`` as an absolute path, generated only when it is not already complete."""
    root_path = Path(root).expanduser().absolute()
    if is_layout_complete(root_path, selection, seed=seed):
        return root_path
    return generate_layout(root_path, selection, seed=seed, workers=workers, progress=progress)


def split_counts(selection: LayoutSelection | None = None) -> dict[int, dict[str, int]]:
    """Per fold, the number of train-list and test-list videos of ``selection`` (no files needed)."""
    groups = [parse_video_name(rel.split("/")[1])[1] for rel in official_relpaths(selection)]
    return {fold: {"train": sum(testing_fold_of_group(g) != fold for g in groups),
                   "test": sum(testing_fold_of_group(g) == fold for g in groups)} for fold in range(1, NUM_FOLDS + 1)}

