"""The embedded synthetic action dataset, written in UCF101's exact layout.

Real UCF101 cannot be downloaded everywhere, so the study ships a generator: offline,
deterministic, and still a fair test of the method, because

- a class is a MOTION (:data:`MOTION_CLASSES`: translations in four directions, clockwise vs
  counter-clockwise rotation, growing vs shrinking, bouncing, orbiting), never an appearance;
- appearance (background texture and colours, object shape/colour/size, distractors, camera
  shake, noise, speed) is drawn per GROUP and shared by all classes of the group, plus per-video
  variation, so one frame cannot tell the class and the official group-wise folds test
  generalisation to unseen looks;
- videos are real MPEG-4 Part 2 (XVID) ``.avi`` files, 320x240 at 25 fps, 2-8 s long, under
  ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` with the official ``ucfTrainTestlist/`` files, so
  every later stage treats them exactly like UCF101.

Generation is resumable and atomic: ``synth_manifest.json`` (generator version, preset, seed) is
written first; each video is written by temp file + rename; a rerun with the same settings only
renders what is missing; ``"complete": true`` is set only once every video and list exists; a
folder made with other settings is refused. Rendering and ground truth live in
:mod:`lib.data.synth_render` (motions) and :mod:`lib.data.synth_style` (looks).

CLI: ``python -m lib.data synth --out DIR --preset {smoke,default} --seed S [--workers N]``.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.data.errors import DataError, DatasetError
from lib.data.synth_render import (
    FPS,
    MOTION_CLASSES,
    RenderedVideo,
    Scene,
    Trajectory,
    VideoSpec,
    iter_frames,
    object_trajectory,
    render_video,
    sample_scene,
    video_num_frames,
)
from lib.data.synth_style import FRAME_H, FRAME_W, GroupStyle, group_style
from lib.data.ucf101 import LIST_DIR_NAME, VIDEO_DIR_NAME, write_split_lists
from lib.data.video_writer import write_video
from lib.runs import atomic_write_text

__all__ = [
    "DEFAULT", "FPS", "FRAME_H", "FRAME_W", "GENERATOR_VERSION", "MANIFEST_NAME", "MOTION_CLASSES", "PRESETS",
    "SMOKE", "GroupStyle", "RenderedVideo", "Scene", "SynthPreset", "Trajectory", "VideoSpec", "ensure_synthetic",
    "generate", "get_preset", "group_style", "is_complete", "object_trajectory", "render_video", "sample_scene",
    "video_num_frames", "video_specs",
]

GENERATOR_VERSION = 2  # bump whenever the rendered bytes change: old folders are then refused
MANIFEST_NAME = "synth_manifest.json"
CODEC = "xvid"
_CLIPS_DOMAIN = 0x5EED_0004  # stream of the per-(class, group) clip counts
_LOCK_NAME = ".synth.lock"


@dataclass(frozen=True)
class SynthPreset:
    """Size of a synthetic dataset. Frame size, fps and codec are fixed (UCF101's)."""

    name: str
    classes: tuple[str, ...]  # label order of classInd.txt, each one of MOTION_CLASSES
    groups: int  # groups 1..groups; fold k tests groups 7k-6..7k, so >= 8 leaves fold 1 a train part
    clips_per_group: tuple[int, int]  # inclusive range of videos per (class, group), drawn per pair
    duration_s: tuple[float, float]  # range of a video's length (uniform per video)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"preset name must be alphanumeric (it names a folder), got {self.name!r}")
        unknown = [c for c in self.classes if c not in MOTION_CLASSES]
        if not self.classes or unknown or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct names from {MOTION_CLASSES}, got {self.classes!r}")
        if not 1 <= self.groups <= 99:
            raise ValueError(f"groups must be in 1..99 (two-digit gXX), got {self.groups}")
        lo, hi = self.clips_per_group
        if not 1 <= lo <= hi <= 99:
            raise ValueError(f"clips_per_group must satisfy 1 <= lo <= hi <= 99, got {self.clips_per_group}")
        d_lo, d_hi = self.duration_s
        if not 1.0 <= d_lo <= d_hi:  # a video must hold at least one 1-second clip
            raise ValueError(f"duration_s must satisfy 1.0 <= lo <= hi, got {self.duration_s}")


# CI and notebook defaults: seconds to generate. MoveLeft/MoveRight differ only in temporal order;
# the two others are different motion types. 10 groups: fold 1 tests 1-7, 8-10 give train + val.
SMOKE = SynthPreset("smoke", ("MoveLeft", "MoveRight", "RotateClockwise", "Grow"), groups=10,
                    clips_per_group=(1, 1), duration_s=(2.0, 3.0))
# The study's embedded dataset: UCF101's 25 groups and 4-7 clips per group, ten motion classes.
DEFAULT = SynthPreset("default", MOTION_CLASSES, groups=25, clips_per_group=(4, 7), duration_s=(2.0, 8.0))
PRESETS: dict[str, SynthPreset] = {p.name: p for p in (SMOKE, DEFAULT)}


def get_preset(preset: str | SynthPreset) -> SynthPreset:
    """A preset by name (``smoke``, ``default``), or a custom :class:`SynthPreset` as is."""
    if isinstance(preset, SynthPreset):
        return preset
    if preset not in PRESETS:
        raise DataError(None, f"unknown synthetic preset {preset!r}", f"use one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def video_specs(preset: str | SynthPreset, *, seed: int = 0) -> list[VideoSpec]:
    """Every video of the dataset, sorted by class (label order), group, clip."""
    preset, seed = get_preset(preset), _check_seed(seed)
    lo, hi = preset.clips_per_group
    specs = []
    for class_name in preset.classes:
        for group in range(1, preset.groups + 1):
            key = [seed, _CLIPS_DOMAIN, zlib.crc32(class_name.encode()), group]
            n_clips = int(np.random.default_rng(np.random.SeedSequence(key)).integers(lo, hi + 1))
            specs += [VideoSpec(class_name, group, clip, seed=seed, duration_s=preset.duration_s)
                      for clip in range(1, n_clips + 1)]
    return specs


def _settings(preset: SynthPreset, seed: int) -> dict[str, Any]:
    """What determines the bytes of a dataset: compared on every rerun (JSON round-tripped)."""
    return json.loads(json.dumps({
        "generator": "lib.data.synth", "generator_version": GENERATOR_VERSION, "preset": asdict(preset),
        "seed": seed, "frame_size": [FRAME_W, FRAME_H], "fps": FPS, "codec": CODEC,
    }))


def _read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(path, f"unreadable synthetic-dataset manifest ({err})",
                           f"delete the folder {root} and generate it again") from None


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")  # a reader sees old or new


def _settings_of(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("generator", "generator_version", "preset", "seed", "frame_size", "fps", "codec")
    return {k: manifest.get(k) for k in keys}


def is_complete(root: str | os.PathLike[str], *, preset: str | SynthPreset = "smoke", seed: int = 0) -> bool:
    """True when ``root`` holds a finished dataset of exactly these settings (all files present)."""
    root, preset, seed = Path(root), get_preset(preset), _check_seed(seed)
    try:
        manifest = _read_manifest(root)
    except DatasetError:
        return False
    if manifest is None or not manifest.get("complete") or _settings_of(manifest) != _settings(preset, seed):
        return False
    lists = ["classInd.txt", *(f"{kind}list0{k}.txt" for kind in ("train", "test") for k in (1, 2, 3))]
    return (all((root / LIST_DIR_NAME / name).is_file() for name in lists)
            and all((root / VIDEO_DIR_NAME / s.relpath).is_file() for s in video_specs(preset, seed=seed)))


@contextlib.contextmanager
def _exclusive_lock(root: Path) -> Iterator[None]:
    """Serialise generators of one folder (two notebooks calling ensure_synthetic at once)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic writes still keep every file whole
        yield
        return
    with open(root / _LOCK_NAME, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _render_to_file(task: tuple[Any, str]) -> int:
    """Worker: render one video (a labelled :class:`VideoSpec`, or a spec with ``render_frames()``,
    ``num_frames`` and optionally ``fps``, default 25) and write it atomically; returns its frame count."""
    spec, path = task
    if isinstance(spec, VideoSpec):
        scene = sample_scene(spec)
        write_video(path, iter_frames(scene), fps=FPS, codec=CODEC)
        return scene.trajectory.n_frames
    frames = spec.render_frames()  # lib.data.synth_pool.PoolVideoSpec, lib.data.synth_ucf101.LayoutVideoSpec
    write_video(path, frames, fps=getattr(spec, "fps", FPS), codec=CODEC)
    return spec.num_frames


def _prepare_folder(root: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """Check ``root`` may receive this dataset; return its manifest (None when new)."""
    manifest = _read_manifest(root)
    if manifest is None:
        foreign = sorted(p.name for p in root.iterdir() if p.name != _LOCK_NAME)
        if foreign:
            raise DatasetError(root, f"folder is not empty ({', '.join(foreign[:5])}) and holds no {MANIFEST_NAME}, "
                                     "so it is not a synthetic dataset this generator made",
                               "pass an empty or new --out folder")
        return None
    old = {k: manifest.get(k) for k in settings}
    if old != settings:
        differing = ", ".join(f"{k}: {old[k]!r} (asked {settings[k]!r})" for k in settings if old[k] != settings[k])
        raise DatasetError(root, f"holds a synthetic dataset made with different settings ({differing})",
                           f"delete the folder (rm -rf {root}) to regenerate it, pass another --out, or rerun "
                           f"with the settings it was made with")
    return manifest


def write_videos(root: Path, *, settings: dict[str, Any], tasks: list[tuple[Any, str]], num_frames: list[int],
                 finish: Callable[[], None], is_done: Callable[[], bool], workers: int | None,
                 progress: bool, desc: str) -> Path:
    """Render ``tasks`` ((spec, absolute path) pairs) into ``root`` resumably; shared by the
    labelled dataset and the pretraining pool.

    The manifest (``settings`` + ``complete: false``) is written first, so a half-made folder is
    always recognisable; each video is written atomically (temp file + rename, so a killed run's
    temp files are deleted and only missing videos are rendered again); ``finish`` writes what
    comes after the videos (split lists); ``complete: true`` is set last. ``is_done`` tells
    whether the folder is already complete. Rendering order is longest video first, so a pool's
    tail stays short; the bytes never depend on ``workers``.
    """
    from tqdm.auto import tqdm

    if root.exists() and not root.is_dir():
        raise DatasetError(root, "exists and is not a folder", "pass a folder path to --out")
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root):
        manifest = _prepare_folder(root, settings)
        if manifest is not None and is_done():
            return root
        manifest = {**settings, "complete": False, "num_videos": len(tasks), "num_frames": int(sum(num_frames))}
        _write_manifest(root, manifest)
        for folder in {Path(path).parent for _, path in tasks}:  # temp files left by a killed run
            for stale in folder.glob(".*.avi"):
                stale.unlink(missing_ok=True)
        order = sorted(range(len(tasks)), key=lambda i: -num_frames[i])
        pending = [tasks[i] for i in order if not Path(tasks[i][1]).is_file()]
        n_proc = max(1, min(workers if workers is not None else (os.cpu_count() or 1), len(pending)))
        with tqdm(total=len(tasks), initial=len(tasks) - len(pending), unit="video", desc=desc,
                  disable=not progress) as bar:
            if n_proc == 1:
                for task in pending:
                    _render_to_file(task)
                    bar.update()
            else:
                # spawn: safe even when the parent (a notebook) already runs torch threads.
                with multiprocessing.get_context("spawn").Pool(n_proc) as pool:
                    for _ in pool.imap_unordered(_render_to_file, pending, chunksize=1):
                        bar.update()
        finish()
        _write_manifest(root, {**manifest, "complete": True})
    return root


def generate(out: str | os.PathLike[str], *, preset: str | SynthPreset = "smoke", seed: int = 0,
             workers: int | None = None, progress: bool = True) -> Path:
    """Write (or finish) the synthetic dataset ``preset``/``seed`` under ``out``; return ``out``.

    ``workers``: processes (default: all cores; 1 renders in this process). The output bytes do
    not depend on it. Raises :class:`DatasetError` when ``out`` holds something else.
    """
    preset, seed = get_preset(preset), _check_seed(seed)
    root = Path(out).expanduser().absolute()
    specs = video_specs(preset, seed=seed)
    video_dir = root / VIDEO_DIR_NAME
    return write_videos(
        root, settings=_settings(preset, seed), tasks=[(s, str(video_dir / s.relpath)) for s in specs],
        num_frames=[video_num_frames(s) for s in specs],
        finish=lambda: write_split_lists(root / LIST_DIR_NAME, list(preset.classes), [s.relpath for s in specs]),
        is_done=lambda: is_complete(root, preset=preset, seed=seed), workers=workers, progress=progress,
        desc=f"synth {preset.name}")


def ensure_synthetic(preset: str | SynthPreset = "smoke", seed: int = 0, root: str | os.PathLike[str] | None = None,
                     *, workers: int | None = None, progress: bool = True) -> Path:
    """The dataset's root, generated into ``paths.synthetic_dataset_dir(preset)`` only if not complete.

    Notebooks call this with their defaults, so a fresh clone works offline. ``root`` overrides
    the location.
    """
    from lib.paths import synthetic_dataset_dir

    preset = get_preset(preset)
    root_path = Path(root).expanduser().absolute() if root is not None else synthetic_dataset_dir(preset.name)
    if is_complete(root_path, preset=preset, seed=seed):
        return root_path
    return generate(root_path, preset=preset, seed=seed, workers=workers, progress=progress)
